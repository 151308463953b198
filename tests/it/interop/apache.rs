//! Apache httpd (Debian's `apache2-bin`): the event MPM in one process
//! (`-X`: no children to outlive the kill), `MaxKeepAliveRequests 7`
//! (Apache then closes a connection after its 8th request: 7 kept-alive
//! ones after the first) and `KeepAliveTimeout 1`.
//!
//! Each message is counted by a tiny `mod_lua` handler: it reads the body,
//! answers 204, and leaves the body in a request note that the access log
//! writes (`%{notifier-id}n`), one line per request, after its response.
//! That counts what the server read and answered, with the connection
//! (`%{remote}p`) and the request's number on it (`%k`). Simpler-looking
//! ways count less surely: a `RewriteRule .* - [R=204]` never reads the
//! body (Apache discards it), so the ids would only be in `mod_dumpio`'s
//! trace of the raw bytes, split into fragments in the error log.
//!
//! Apache sends no `Keep-Alive: timeout=1` header here (it does only to
//! clients that send `Connection: keep-alive`, which the client does not),
//! so the client keeps its connections and meets Apache's idle closes.

use std::fs;
use std::time::Duration;

use super::{deliver_and_count, find_all, Daemon, Log, Needed, Plan, TempDir};

/// Set (to anything) to fail instead of skipping when Apache is missing.
const REQUIRE_VAR: &str = "NOTIFIER_REQUIRE_APACHE";

const HTTPD: Needed = Needed {
    what: "Apache httpd",
    candidates: &["apache2", "httpd", "/usr/sbin/apache2", "/usr/sbin/httpd"],
};

/// `mod_lua`, in the modules directory that has the others too.
const MOD_LUA: Needed = Needed {
    what: "Apache's mod_lua",
    candidates: &[
        "/usr/lib/apache2/modules/mod_lua.so",
        "/usr/lib64/httpd/modules/mod_lua.so",
        "/usr/lib/httpd/modules/mod_lua.so",
        "/usr/libexec/apache2/mod_lua.so",
    ],
};

/// Apache's event MPM times keep-alive out to within a tenth of a second.
const PLAN: Plan = Plan {
    bursts: 10,
    gap: Duration::from_millis(1_500),
};

const ACCESS_LOG: Log = Log {
    what: "Apache access log",
    file: "access.log",
    first: 0,
};

const HANDLER: &str = "\
function handle(r)
    r.notes['notifier-id'] = r:requestbody()
    r.status = 204
    return apache2.OK
end
";

#[test]
fn apache_interop() {
    let Some([httpd, mod_lua]) = find_all("Apache interop", REQUIRE_VAR, [&HTTPD, &MOD_LUA]) else {
        return;
    };
    let modules = mod_lua.parent().expect("the modules directory");
    let dir = TempDir::new("apache");
    let dir = dir.path();
    fs::write(dir.join("count.lua"), HANDLER).expect("write count.lua");
    // Started as root, Apache serves as another user (a number, so that no
    // name needs to exist; otherwise `User` changes nothing), who must be
    // able to read the handler in the temp dir.
    let server = Daemon::configured(
        "apache",
        &httpd,
        &["-X"],
        dir,
        "httpd.conf",
        Some("error.log"),
        |port| {
            let _ = fs::remove_file(dir.join("httpd.pid"));
            format!(
                "ServerRoot {dir}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {dir}/httpd.pid
DefaultRuntimeDir {dir}
ErrorLog {dir}/error.log
LogLevel warn
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule lua_module {modules}/mod_lua.so
User #65534
Group #65534
KeepAlive On
MaxKeepAliveRequests 7
KeepAliveTimeout 1
LogFormat \"%{{notifier-id}}n %{{remote}}p %k %s\" ids
CustomLog {dir}/access.log ids
LuaScope thread
LuaMapHandler ^/notify$ {dir}/count.lua handle
<Location />
    Require all granted
</Location>
",
                dir = dir.display(),
                modules = modules.display(),
            )
        },
    );
    deliver_and_count("Apache", server.port(0), PLAN, dir, &[ACCESS_LOG]);
}
