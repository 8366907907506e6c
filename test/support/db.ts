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
