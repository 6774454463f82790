import { UsageError } from '../../errors.js'
import type { SchemeUrl, StoreAddress } from '../url-forms.js'

/** `postgres://USER@HOST:PORT/DB?…` (or `postgresql://`): Directories and PathInfos in a PostgreSQL database. */
export interface PostgresAddress extends StoreAddress {
  kind: 'postgres'
  /** The connection string as given; what it leaves out comes from the PG* variables, as libpq does. */
  connectionString: string
}

/** Checks a `postgres://` URL; loads nothing. */
export function postgresForm({ url, u }: SchemeUrl): PostgresAddress {
  if (u.hash) throw new UsageError(`store URL ${JSON.stringify(url)}: unexpected fragment`)
  return { kind: 'postgres', connectionString: url }
}
