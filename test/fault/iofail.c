/*
 * iofail — an LD_PRELOAD shim that makes writes or syncs of chosen files fail,
 * for the storage fault tests (test/integration/test_disk.py).
 *
 *   LD_PRELOAD=build/test/libiofail.so
 *   IOFAIL_PATH=DIR     only files whose path starts with DIR (unset: the shim
 *                       does nothing)
 *   IOFAIL_OPS=fsync    fsync and fdatasync fail          (default)
 *             =write    write, pwrite and writev fail
 *             =both     all of them
 *   IOFAIL_AFTER=N      the first N matching calls succeed, every later one
 *                       fails (default 0)
 *   IOFAIL_ERRNO=N      the errno of a failure (default EIO)
 *
 * A failing call does nothing and returns -1; the first one prints
 * "iofail: failing OP on PATH after N calls" to stderr. A call matches when
 * its fd is a regular file whose /proc/self/fd link starts with IOFAIL_PATH,
 * so sockets and pipes (gRPC) pass untouched.
 *
 * The call counter is the one piece of process-wide mutable state: a
 * preloaded shim has no object to keep it in. It is atomic (LevelDB syncs
 * from its background thread too).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_SYNC = 1, OP_WRITE = 2 };

static atomic_ulong calls;
static atomic_int announced;

/* The real libc function `name` (or whatever comes next in the chain). */
static void *next_fn(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) abort();
    return f;
}

/* 1 when this call on fd must fail (and errno is set). */
static int should_fail(int fd, int op, const char *opname)
{
    const char *prefix = getenv("IOFAIL_PATH");
    const char *ops = getenv("IOFAIL_OPS");
    const char *after = getenv("IOFAIL_AFTER");
    const char *err = getenv("IOFAIL_ERRNO");
    int want = OP_SYNC;
    char link[64], path[4096];
    struct stat st;
    ssize_t n;
    unsigned long k;

    if (prefix == NULL || prefix[0] == '\0') return 0;
    if (ops && strcmp(ops, "write") == 0) want = OP_WRITE;
    else if (ops && strcmp(ops, "both") == 0) want = OP_SYNC | OP_WRITE;
    if (!(want & op)) return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    if (strncmp(path, prefix, strlen(prefix)) != 0) return 0;
    k = atomic_fetch_add(&calls, 1);
    if (k < strtoul(after ? after : "0", NULL, 10)) return 0;
    if (atomic_exchange(&announced, 1) == 0) {
        char line[4300];
        int len = snprintf(line, sizeof line, "iofail: failing %s on %s after %lu calls\n",
                           opname, path, k);
        ssize_t (*real_write)(int, const void *, size_t) = next_fn("write");
        if (len > 0) (void)!real_write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    }
    errno = err ? atoi(err) : EIO;
    return 1;
}

int fsync(int fd)
{
    int (*real)(int) = next_fn("fsync");
    return should_fail(fd, OP_SYNC, "fsync") ? -1 : real(fd);
}

int fdatasync(int fd)
{
    int (*real)(int) = next_fn("fdatasync");
    return should_fail(fd, OP_SYNC, "fdatasync") ? -1 : real(fd);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t (*real)(int, const void *, size_t) = next_fn("write");
    return should_fail(fd, OP_WRITE, "write") ? -1 : real(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t (*real)(int, const void *, size_t, off_t) = next_fn("pwrite");
    return should_fail(fd, OP_WRITE, "pwrite") ? -1 : real(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    ssize_t (*real)(int, const struct iovec *, int) = next_fn("writev");
    return should_fail(fd, OP_WRITE, "writev") ? -1 : real(fd, iov, iovcnt);
}
