/*
 * A write-fault injector for the recorder's fault tests (Tests/Integration/test_recorder_guarantees.py),
 * loaded with LD_PRELOAD into `qmpreplay record` only. It acts on writes to files whose path
 * (as /proc/self/fd shows it) contains $QMPREC_FAULT_PATH, and leaves every other descriptor alone.
 *
 *   QMPREC_FAULT_PATH     substring of the paths to act on (required; nothing happens without it)
 *   QMPREC_FAULT_AFTER    bytes that are written normally; the write that crosses the limit is
 *                         cut short there (a partial write, as a filling disk does) and later
 *                         writes fail with $QMPREC_FAULT_ERRNO
 *   QMPREC_FAULT_ERRNO    ENOSPC (default) or EIO, or a number
 *   QMPREC_FAULT_FOR_MS   writes fail for this long after the first failure, then work again
 *                         (absent or 0: for ever)
 *   QMPREC_FAULT_RATE     bytes per second: every write first sleeps as long as that rate needs
 *                         (a slow disk)
 *   QMPREC_FAULT_LOG      a file that gets one line per injected failure or partial write
 *
 * Built by the tests with `cc -shared -fPIC -O2 -o qmprec_faults.so qmprec_faults.c -ldl`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long written;          /* bytes written normally to matching files */
static long long fail_started_ns;  /* when the first failure was injected (0: not yet) */

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long env_ll(const char *name, long long dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    return strtoll(v, NULL, 10);
}

static int env_errno(void) {
    const char *v = getenv("QMPREC_FAULT_ERRNO");
    if (!v || !*v || !strcmp(v, "ENOSPC")) return ENOSPC;
    if (!strcmp(v, "EIO")) return EIO;
    return atoi(v);
}

static void log_line(const char *what, int fd, size_t len, long long ret) {
    const char *path = getenv("QMPREC_FAULT_LOG");
    if (!path || !*path) return;
    static write_fn real;
    if (!real) real = (write_fn)dlsym(RTLD_NEXT, "write");
    int lfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (lfd < 0) return;
    char buf[200];
    int n = snprintf(buf, sizeof buf, "%lld %s fd=%d len=%zu ret=%lld\n", now_ns(), what, fd, len, ret);
    if (n > 0) real(lfd, buf, (size_t)n);
    close(lfd);
}

static int matches(int fd) {
    const char *want = getenv("QMPREC_FAULT_PATH");
    if (!want || !*want || fd <= 2) return 0;
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    return strstr(target, want) != NULL;
}

/* How much of a write of `len` bytes may go through: len, a smaller count (the limit is
   crossed), or -1 with errno set. Sleeps first when a rate is set. */
static ssize_t allowance(int fd, size_t len) {
    long long rate = env_ll("QMPREC_FAULT_RATE", 0);
    if (rate > 0 && len > 0) {
        long long ns = (long long)len * 1000000000LL / rate;
        struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    long long after = env_ll("QMPREC_FAULT_AFTER", -1);
    if (after < 0) return (ssize_t)len;
    long long for_ms = env_ll("QMPREC_FAULT_FOR_MS", 0);
    ssize_t allow;
    pthread_mutex_lock(&lock);
    if (fail_started_ns && for_ms > 0 && now_ns() - fail_started_ns > for_ms * 1000000LL) {
        allow = (ssize_t)len;                       /* the fault is over */
    } else if (written >= after) {
        if (!fail_started_ns) fail_started_ns = now_ns();
        allow = -1;
    } else if (written + (long long)len > after) {
        allow = (ssize_t)(after - written);         /* partial: the disk fills mid-write */
    } else {
        allow = (ssize_t)len;
    }
    if (allow > 0) written += allow;
    pthread_mutex_unlock(&lock);
    if (allow < 0) {
        log_line("fail", fd, len, -1);
        errno = env_errno();
    } else if ((size_t)allow < len) {
        log_line("partial", fd, len, allow);
    }
    return allow;
}

ssize_t write(int fd, const void *buf, size_t len) {
    static write_fn real;
    if (!real) real = (write_fn)dlsym(RTLD_NEXT, "write");
    if (!matches(fd)) return real(fd, buf, len);
    ssize_t allow = allowance(fd, len);
    if (allow < 0) return -1;
    if (allow == 0 && len > 0) { errno = env_errno(); return -1; }
    return real(fd, buf, (size_t)allow);
}

static ssize_t do_pwrite(const char *sym, int fd, const void *buf, size_t len, off_t off) {
    pwrite_fn real = (pwrite_fn)dlsym(RTLD_NEXT, sym);
    if (!matches(fd)) return real(fd, buf, len, off);
    ssize_t allow = allowance(fd, len);
    if (allow < 0) return -1;
    if (allow == 0 && len > 0) { errno = env_errno(); return -1; }
    return real(fd, buf, (size_t)allow, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) { return do_pwrite("pwrite", fd, buf, len, off); }
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) { return do_pwrite("pwrite64", fd, buf, len, off); }
