/** The message of anything thrown: an Error's own message, or the value as text (every layer reports with it). */
export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))
