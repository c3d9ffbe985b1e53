/** Runs the CLI (and through it the lab's commands) in-process with captured output. */
import { runCli } from '@ddpm/cli';

export async function runCaptured(...argv: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { status, stdout, stderr };
}
