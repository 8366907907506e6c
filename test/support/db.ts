import pg from "pg";

/** Runs one statement on its own connection to `url` and returns its rows. */
export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** The URL of another database on the same server. */
export function databaseUrl(url: string, database: string) {
  const other = new URL(url);
  other.pathname = `/${database}`;
  return other.toString();
}

/**
 * A digest of every row of every table in schema public, table by table, read
 * through `db` (a client or pool), to tell whether a request changed anything.
 */
export async function databaseChecksum(db: pg.Client | pg.Pool): Promise<Record<string, string>> {
  const tables = await db.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
  const digests = tables.rows.map(
    ({ tablename }) =>
      `SELECT ${pg.escapeLiteral(tablename)} AS name, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS digest
       FROM ${pg.escapeIdentifier(tablename)} AS t`,
  );
  const { rows } = await db.query<{ name: string; digest: string }>(digests.join(" UNION ALL "));
  return Object.fromEntries(rows.map((row) => [row.name, row.digest]));
}
