// Linked into the static yard-portable only (CMakeLists.txt).
//
// A statically linked glibc resolves names through NSS like a dynamic one,
// and loads with dlopen any module that the machine's /etc/nsswitch.conf
// names beyond the two built into glibc since 2.34, "files" and "dns":
// Ubuntu lists mdns4_minimal, Amazon Linux myhostname, others systemd, sss or
// resolve. Such a module is built for the machine's own glibc, which a static
// program must not load (glibc warns about it at link time). So the portable
// `yard` reads hosts, users and groups from the built-in modules only, before
// main() runs: /etc/hosts and /etc/resolv.conf, /etc/passwd and /etc/group.
#include <nss.h>

#include <initializer_list>

namespace {

const bool kNssConfigured = [] {
  for (const char* db : {"hosts", "networks"}) __nss_configure_lookup(db, "files dns");
  for (const char* db : {"passwd", "group", "shadow", "services", "protocols"})
    __nss_configure_lookup(db, "files");
  return true;
}();

}  // namespace
