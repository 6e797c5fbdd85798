<?php
// A legacy PHP app on PHP's own session module with Debian's php-cli defaults (`PHPSESSID`,
// files in session.save_path, session.use_strict_mode=0: an ID the app never issued is
// accepted too). Written the way many apps are: the login stores the user in the existing
// session WITHOUT session_regenerate_id(). That is the session fixation bug on purpose;
// session-guard must protect it anyway (tests/app_frameworks.rs).
//
//   php -S 127.0.0.1:PORT tests/apps/php/app.php      (this file is the router script)
//   APP_PREFIX=/legacy                                 serves the routes under that prefix
//
// Routes: GET /login-form, POST /login (user=...&password=...), GET /me, POST /logout.

$users = ['victim' => 'victim-pass', 'attacker' => 'attacker-pass', 'alice' => 'demo'];
$prefix = rtrim((string) getenv('APP_PREFIX'), '/');
$path = (string) parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
if ($prefix !== '' && str_starts_with($path, $prefix)) {
    $path = substr($path, strlen($prefix));
}
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';

function text(int $status, string $body): void
{
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    echo $body;
}

// Every visitor gets a session (and its cookie) on any page, as apps with a CSRF token do:
// the attacker obtains a genuine session ID just by visiting.
session_start();

if ($method === 'GET' && $path === '/login-form') {
    $_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
    header('Content-Type: text/html; charset=utf-8');
    echo "<form method=\"post\" action=\"$prefix/login\"><input name=\"user\"> "
        . "<input name=\"password\" type=\"password\"> <button>log in</button></form>\n";
} elseif ($method === 'POST' && $path === '/login') {
    $user = (string) ($_POST['user'] ?? '');
    if (!isset($users[$user]) || $users[$user] !== (string) ($_POST['password'] ?? '')) {
        text(401, "bad credentials\n");
    } else {
        // The bug on purpose: no session_regenerate_id(true) before marking the session.
        $_SESSION['user'] = $user;
        text(200, "logged in as $user\n");
    }
} elseif ($method === 'GET' && $path === '/me') {
    text(200, ($_SESSION['user'] ?? 'anonymous') . "\n");
} elseif ($method === 'POST' && $path === '/logout') {
    $_SESSION = [];
    session_destroy();
    $p = session_get_cookie_params();
    setcookie(session_name(), '', ['expires' => time() - 42000, 'path' => $p['path']]);
    text(200, "logged out\n");
} else {
    text(404, "not found\n");
}
