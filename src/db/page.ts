/** The page asked for by a List request, with the API's defaults: offset 0, limit 10. */
export function pageOf(request: { offset?: number; limit?: number }) {
  return { offset: request.offset ?? 0, limit: request.limit ?? 10 };
}
