//! lighttpd, with `server.max-keep-alive-requests = 7` (it then closes a
//! connection after its 8th request, with `Connection: close`) and
//! `server.max-keep-alive-idle = 1`.
//!
//! Each message is counted by a tiny `mod_magnet` (Lua) script: it
//! collects the body, answers 204, and leaves the body in the request's
//! environment, which the access log writes (`%{notifier_id}e`) with the
//! connection (`%{remote}p`) and the request's number on it (`%k`).
//!
//! lighttpd counts idle time in whole seconds, checked once a second: with
//! `max-keep-alive-idle = 1` it closed idle connections 1 to 2 s after their
//! last response here. The gaps are longer than that, so that every idle
//! connection is closed by the next burst, and fewer, to keep the test
//! short.

use std::fs;
use std::time::Duration;

use super::{deliver_and_count, find_all, Daemon, Log, Needed, Plan, TempDir};

/// Set (to anything) to fail instead of skipping when lighttpd is missing.
const REQUIRE_VAR: &str = "NOTIFIER_REQUIRE_LIGHTTPD";

const LIGHTTPD: Needed = Needed {
    what: "lighttpd",
    candidates: &["lighttpd", "/usr/sbin/lighttpd"],
};

/// `mod_magnet` (Debian's `lighttpd-modules-lua`), where lighttpd looks for
/// its modules.
const MOD_MAGNET: Needed = Needed {
    what: "lighttpd's mod_magnet",
    candidates: &[
        "/usr/lib/lighttpd/mod_magnet.so",
        "/usr/lib64/lighttpd/mod_magnet.so",
        "/usr/local/lib/lighttpd/mod_magnet.so",
    ],
};

const PLAN: Plan = Plan {
    bursts: 5,
    gap: Duration::from_millis(2_500),
};

const ACCESS_LOG: Log = Log {
    what: "lighttpd access log",
    file: "access.log",
    first: 0,
};

/// The script. lighttpd 1.4.69's `r.req_body.get` gives the whole buffer
/// the body was read into, the request's head included (fixed upstream
/// later: the body is taken at its offset in the chunk); the body is then
/// the `len` bytes after the head. The client sends one request at a time,
/// so no later request shares the buffer.
const SCRIPT: &str = "\
local r = lighty.r
if not r.req_body.collect then
    return 0
end
local body = r.req_body.get
local len = r.req_body.len
if #body > len then
    local _, head_end = body:find('\\r\\n\\r\\n', 1, true)
    body = body:sub(head_end + 1, head_end + len)
end
r.req_env['notifier_id'] = body
return 204
";

#[test]
fn lighttpd_interop() {
    let Some([lighttpd, _]) = find_all("lighttpd interop", REQUIRE_VAR, [&LIGHTTPD, &MOD_MAGNET])
    else {
        return;
    };
    let dir = TempDir::new("lighttpd");
    let dir = dir.path();
    fs::write(dir.join("count.lua"), SCRIPT).expect("write count.lua");
    let server = Daemon::configured(
        "lighttpd",
        &lighttpd,
        &["-D"],
        dir,
        "lighttpd.conf",
        Some("error.log"),
        |port| {
            format!(
                "server.document-root = \"{dir}\"
server.bind = \"127.0.0.1\"
server.port = {port}
server.pid-file = \"{dir}/lighttpd.pid\"
server.errorlog = \"{dir}/error.log\"
server.modules = ( \"mod_magnet\", \"mod_accesslog\" )
server.max-keep-alive-requests = 7
server.max-keep-alive-idle = 1
magnet.attract-raw-url-to = ( \"{dir}/count.lua\" )
accesslog.filename = \"{dir}/access.log\"
accesslog.format = \"%{{notifier_id}}e %{{remote}}p %k %s\"
",
                dir = dir.display(),
            )
        },
    );
    deliver_and_count("lighttpd", server.port(0), PLAN, dir, &[ACCESS_LOG]);
}
