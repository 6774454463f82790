/**
 * Which failed requests the binary cache logs, and how: one line with
 * method, path, status and reason. Reads (GET, HEAD) only when the server
 * failed (5xx): a 404 is a client asking about a path it may not have,
 * the normal case. Anything else (uploads) at any 4xx too, since a
 * refused upload is something the operator wants to see.
 */
export function failureLine(method: string | undefined, url: string | undefined, status: number, reason: string): string | undefined {
  const read = method === 'GET' || method === 'HEAD'
  if (status < (read ? 500 : 400)) return undefined
  // One line whatever the reason holds.
  return `${method} ${loggedPath(url)} ${status}: ${reason.replace(/\s*\n\s*/g, ' ')}`
}

/**
 * The path of a request's URL and nothing else: no query (it may carry a
 * token) and no user:password of an absolute-form URL. Headers, where
 * Basic credentials travel, are never logged.
 */
export function loggedPath(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://cache.invalid').pathname
  } catch {
    return '(unparsable URL)'
  }
}
