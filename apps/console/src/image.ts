/** A picture of the API (fetched with the token) for an <img>, as a data: URL. */
import { useEffect, useState } from 'preact/hooks';

import { imageData } from './api';

/**
 * The picture at `url` (none while the first one loads; the previous one stays while a new URL
 * loads), or why it could not be read. An answer for a URL no longer asked for is dropped.
 */
export function useImageData(url: string | undefined): { picture?: string; error?: string } {
  const [state, setState] = useState<{ picture?: string; error?: string }>({});
  useEffect(() => {
    if (url === undefined) return;
    let stale = false;
    imageData(url).then(
      (picture) => !stale && setState({ picture }),
      (err: unknown) => !stale && setState({ error: err instanceof Error ? err.message : String(err) }),
    );
    return () => {
      stale = true;
    };
  }, [url]);
  return state;
}
