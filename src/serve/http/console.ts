// The web console's static files (bundled in src/console/, no CDN). They carry no data:
// everything the page shows comes from the API, behind the operator's token.
import { readFileSync } from 'node:fs';
import type { Handler } from './server.ts';

const FILES: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/console/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/console/activity.js': ['activity.js', 'text/javascript; charset=utf-8'],
  '/console/discovered.js': ['discovered.js', 'text/javascript; charset=utf-8'],
  '/console/style.css': ['style.css', 'text/css; charset=utf-8'],
};

export function consoleRoutes(): Handler {
  const cache = new Map<string, Buffer>();
  return (req, res, url) => {
    const f = FILES[url.pathname];
    if (!f || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    let body = cache.get(f[0]);
    if (!body) cache.set(f[0], (body = readFileSync(new URL(`../../console/${f[0]}`, import.meta.url))));
    res.writeHead(200, {
      'Content-Type': f[1],
      'Content-Length': body.length,
      'Cache-Control': 'no-cache',
      // nothing but our own files, ever: the page must work with no internet and leak nothing
      'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}
