/**
 * The console: a page per URL (/ui/ the jobs, /ui/jobs/<id> a job, /ui/submit the form, /ui/models
 * the shipped models), routed here without reloads; plain links work too (the API serves the same
 * shell for each).
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';

import { setToken, token, whenUnauthorized } from './api';
import { JobPage } from './job';
import { JobsPage } from './jobs';
import { ModelsPage } from './models';
import { Link } from './nav';
import { SubmitPage } from './submit';
import './style.css';

function Login(props: { onDone: () => void }) {
  const [value, setValue] = useState('');
  return (
    <form
      class="login"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        props.onDone();
      }}
    >
      <h2>This API wants a token</h2>
      <p>It is kept in this tab only and sent as the API’s bearer header.</p>
      <label>
        Token{' '}
        <input
          type="password"
          name="token"
          autocomplete="off"
          value={value}
          onInput={(e) => setValue(e.currentTarget.value)}
        />
      </label>
      <button type="submit">Sign in</button>
    </form>
  );
}

function App() {
  const [path, setPath] = useState(location.pathname);
  const [asking, setAsking] = useState(false);
  const [, setVersion] = useState(0);
  useEffect(() => {
    const onPop = (): void => setPath(location.pathname);
    addEventListener('popstate', onPop);
    whenUnauthorized(() => setAsking(true));
    return () => removeEventListener('popstate', onPop);
  }, []);
  const jobId = /^\/ui\/jobs\/([^/]+)$/.exec(path)?.[1];
  const page =
    jobId !== undefined ? (
      <JobPage id={decodeURIComponent(jobId)} key={jobId} />
    ) : path === '/ui/submit' ? (
      <SubmitPage />
    ) : path === '/ui/models' ? (
      <ModelsPage />
    ) : (
      <JobsPage />
    );
  return (
    <>
      <header>
        <strong>ddpm</strong>
        <nav>
          <Link href="/ui/">Jobs</Link>
          <Link href="/ui/submit">Submit</Link>
          <Link href="/ui/models">Models</Link>
          <a href="/docs">API</a>
        </nav>
        {token() ? (
          <button
            class="quiet"
            onClick={() => {
              setToken(undefined);
              setVersion((v) => v + 1);
            }}
          >
            Sign out
          </button>
        ) : null}
      </header>
      <main>
        {asking ? (
          <Login
            onDone={() => {
              setAsking(false);
              setVersion((v) => v + 1);
            }}
          />
        ) : (
          page
        )}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (!root) throw new Error('the console page has no #app element to render into');
render(<App />, root);
