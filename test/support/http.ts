/** An HTTP answer: its status, headers and body text. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

/**
 * Sends one request to `path` on `base`. A string body goes as it is, any
 * other body as JSON; a body sets content-type application/json.
 */
export async function send(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const response = await fetch(new URL(path, base), {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Like `send`, and parses the body as JSON, which it must be unless it is empty. */
export async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const answer = await send(base, method, path, body, headers);
  return { ...answer, json: answer.text ? (JSON.parse(answer.text) as unknown) : undefined };
}
