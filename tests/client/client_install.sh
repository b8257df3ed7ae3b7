#!/bin/sh
# tests/client/client_install.sh BUILD_DIR CC SANITIZE: libticketq as an outside user sees it.
#
# Goal: `cmake --install` (component client) yields a usable library: static and shared
# libticketq, ticketq.h with the headers it includes, a relocatable ticketq.pc, the CLI.
# Method: install into a temporary prefix, then compile a tiny program with nothing but
# `pkg-config --cflags --libs ticketq` (shared) and once against libticketq.a (static), and run
# both: they must link, call the library and get the documented error for a dead address.
set -eu
build=$1
cc=$2
sanitize=$3
command -v pkg-config >/dev/null || { echo "pkg-config missing: skipped"; exit 77; }
prefix=$(mktemp -d "${TMPDIR:-/tmp}/tq-install-XXXXXX")
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" --component client >/dev/null
for f in include/ticketq/ticketq.h include/ticketq/ticketq.pb-c.h include/ticketq/tq_err.h \
         bin/ticketq; do
  test -e "$prefix/$f" || { echo "missing $prefix/$f"; exit 1; }
done
pc=$(find "$prefix" -name ticketq.pc)
test -n "$pc" || { echo "ticketq.pc not installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
test -e "$libdir/libticketq.a" || { echo "libticketq.a not installed"; exit 1; }
test -e "$libdir/libticketq.so" || { echo "libticketq.so not installed"; exit 1; }

cat > "$prefix/hello.c" <<'C'
#include <ticketq.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    struct tq_client_options o = {.addr = "unix:/nonexistent/ticketq.sock"};
    struct tq_client *c = NULL;
    struct tq_error err;
    enum tq_err rc = tq_client_connect(&o, &c, &err);
    if (rc != TQ_ERR_UNAVAILABLE || c != NULL) {
        fprintf(stderr, "expected unavailable, got %s: %s\n", tq_err_name(rc), err.msg);
        return 1;
    }
    Ticketq__Request req = TICKETQ__REQUEST__INIT; /* the generated types are usable */
    req.id = 1;
    if (strcmp(tq_client_channel_name(TICKETQ__CHANNEL__WHATSAPP), "whatsapp") != 0) return 1;
    printf("hello from libticketq: %s\n", err.msg);
    return req.id == 1 ? 0 : 1;
}
C
san=""
if [ "$sanitize" = "ON" ]; then san="-fsanitize=address,undefined"; fi
export PKG_CONFIG_PATH="$(dirname "$pc")"
# shellcheck disable=SC2046
"$cc" -std=c17 -Wall -Werror $san -o "$prefix/hello_shared" "$prefix/hello.c" \
  $(pkg-config --cflags --libs ticketq)
LD_LIBRARY_PATH="$libdir" "$prefix/hello_shared"
# shellcheck disable=SC2046
"$cc" -std=c17 -Wall -Werror $san -o "$prefix/hello_static" "$prefix/hello.c" \
  $(pkg-config --cflags ticketq) "$libdir/libticketq.a" $(pkg-config --libs libprotobuf-c)
"$prefix/hello_static"
"$prefix/bin/ticketq" --help >/dev/null
echo "client_install: ok"
