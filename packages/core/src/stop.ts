/**
 * Why a run is asked to stop: a user's `cancel` (the job ends cancelled) or its worker's
 * `shutdown` (a deploy or scale-in: the job is handed back and resumes elsewhere from its
 * checkpoint). The reason crosses processes (worker to job process and back) and a group's data
 * plane, so it is read back with {@link stopReasonOf}, never compared as free text.
 */
export const STOP_REASONS = ['cancel', 'shutdown'] as const;
export type StopReason = (typeof STOP_REASONS)[number];

/**
 * A stop reason as it arrives (an abort signal's reason, a message, a peer's report):
 * `shutdown` only when it says exactly that; anything else stops the run as a user's cancel would.
 */
export function stopReasonOf(value: unknown): StopReason {
  const said = value instanceof Error ? value.message : value;
  return said === 'shutdown' ? 'shutdown' : 'cancel';
}
