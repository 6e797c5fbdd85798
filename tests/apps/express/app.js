// A legacy Express app with its own session cookie (express-session's `connect.sid`, in its
// default MemoryStore), written the way many apps are: the login stores the user in the
// existing session WITHOUT `req.session.regenerate()`. That is the session fixation bug on
// purpose: whoever planted the session ID before the login is logged in with the victim.
// session-guard must protect it anyway (tests/app_frameworks.rs, `make run`'s /legacy/).
//
//   node app.js [PORT]        (or PORT=...; default 8083; 0 = any free port, printed), listens on 127.0.0.1
//   APP_PREFIX=/legacy        serves the same routes under that prefix (the demo's route)
//
// Routes: GET /login-form, POST /login (user=...&password=...), GET /me, POST /logout.
'use strict';

const express = require('express');
const session = require('express-session');

const port = Number(process.argv[2] || process.env.PORT || 8083);
const prefix = (process.env.APP_PREFIX || '').replace(/\/+$/, '');
// A demo secret: express-session signs its cookie with it (the signature does not stop
// fixation: the attacker's cookie is a genuine, correctly signed one).
const secret = process.env.APP_SESSION_SECRET || 'legacy-express-demo-secret';
const users = { victim: 'victim-pass', attacker: 'attacker-pass', alice: 'demo' };

const app = express();
app.disable('x-powered-by');
app.use(express.urlencoded({ extended: false }));
app.use(
  session({
    secret,
    name: 'connect.sid',
    resave: false,
    // Every visitor gets a session (and its cookie) on the first page, e.g. for a CSRF token:
    // the attacker can obtain a genuine session ID just by visiting.
    saveUninitialized: true,
  })
);

const router = express.Router();

router.get('/', (req, res) => res.redirect(`${prefix}/me`));

router.get('/login-form', (req, res) => {
  req.session.visits = (req.session.visits || 0) + 1;
  res.type('html').send(
    `<form method="post" action="${prefix}/login">` +
      '<input name="user"> <input name="password" type="password"> <button>log in</button></form>\n'
  );
});

router.post('/login', (req, res) => {
  const user = String(req.body.user || '');
  if (!Object.hasOwn(users, user) || users[user] !== String(req.body.password || '')) {
    res.status(401).type('text').send('bad credentials\n');
    return;
  }
  // The bug on purpose: no req.session.regenerate() before marking the session logged in.
  req.session.user = user;
  res.type('text').send(`logged in as ${user}\n`);
});

router.get('/me', (req, res) => {
  res.type('text').send(`${req.session.user || 'anonymous'}\n`);
});

router.post('/logout', (req, res) => {
  req.session.destroy(() => {
    res.clearCookie('connect.sid', { path: '/' });
    res.type('text').send('logged out\n');
  });
});

app.use(prefix || '/', router);

// Port 0 asks the OS for a free port; the line below reports the one bound (the tests read it).
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`express app listening on 127.0.0.1:${server.address().port}${prefix || ''}`);
});
