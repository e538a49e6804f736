/*
 * powercut.so: an LD_PRELOAD shim that records every write to one file and every
 * flush of it, so a test can rebuild the file as a power cut would leave it: only
 * writes a later flush (fsync/fdatasync of that file) covered, or writes through a
 * descriptor opened O_SYNC/O_DSYNC, survive. LevelDB's FaultInjectionTestEnv
 * ("drop unsynced data"), for a C library (LMDB) whose writes no Python seam sees.
 *
 * Environment: POWERCUT_FILE (the file to watch, an absolute real path) and
 * POWERCUT_LOG (where records go, appended). Record: struct rec, then `len` bytes
 * of data for a write. The order is strict in the direction that matters: a write
 * is logged after it completed; a flush is logged twice, before it starts (BEGIN)
 * and after it returned successfully (END, same id in `offset`). A write covered by
 * a flush is one logged before a BEGIN whose END is in the log: that flush started
 * after the write completed and finished before the cut (a race can only make the
 * model drop more; a kill inside a flush does not count it).
 *
 * Test-only code: it aborts on a failed log write (a lost record would make the
 * model lie).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { REC_WRITE = 1, REC_FLUSH_BEGIN = 2, REC_TRUNCATE = 3, REC_FLUSH_END = 4 };
enum { FLAG_DSYNC = 1 };

struct rec {
    uint32_t kind;
    uint32_t flags;
    uint64_t offset; /* write: where; truncate: the new size; flush: its id */
    uint64_t len;    /* write: bytes that follow */
};

#define MAX_FD 65536
static unsigned char tracked[MAX_FD]; /* 0: no; 1: yes; 2: yes, O_SYNC/O_DSYNC */
static char target[PATH_MAX];
static int logfd = -1;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t flush_ids; /* atomic: the id of the last flush begun */

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_close)(int);

__attribute__((constructor)) static void powercut_init(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_close = dlsym(RTLD_NEXT, "close");
    const char *t = getenv("POWERCUT_FILE"), *l = getenv("POWERCUT_LOG");
    if (t == NULL || l == NULL || strlen(t) >= sizeof target) return; /* inert */
    strcpy(target, t);
    logfd = real_open(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) abort();
}

static void log_rec(uint32_t kind, uint32_t flags, uint64_t offset,
                    const struct iovec *iov, int iovcnt, uint64_t len) {
    struct rec r = {kind, flags, offset, len};
    struct iovec parts[1 + 64];
    int n = 0;
    parts[n].iov_base = &r;
    parts[n++].iov_len = sizeof r;
    if (iovcnt > 64) abort();
    uint64_t left = len;
    for (int i = 0; i < iovcnt && left > 0; i++) { /* only the bytes really written */
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : (size_t)left;
        parts[n].iov_base = iov[i].iov_base;
        parts[n++].iov_len = take;
        left -= take;
    }
    size_t want = 0;
    for (int i = 0; i < n; i++) want += parts[i].iov_len;
    pthread_mutex_lock(&log_mu);
    ssize_t got = real_writev(logfd, parts, n);
    pthread_mutex_unlock(&log_mu);
    if (got < 0 || (size_t)got != want) abort();
}

/* After a successful open: is `fd` the watched file? (by its real path) */
static void note_open(int fd, int flags) {
    if (fd < 0 || fd >= MAX_FD || logfd < 0) return;
    tracked[fd] = 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    if (strcmp(path, target) == 0)
        tracked[fd] = (flags & (O_SYNC | O_DSYNC)) ? 2 : 1;
}

static int is_tracked(int fd) { return fd >= 0 && fd < MAX_FD && tracked[fd]; }

/* The optional mode argument of open(2)-style calls (present with O_CREAT/O_TMPFILE). */
#define MODE_ARG(flags)                                                      \
    mode_t mode = 0;                                                         \
    do {                                                                     \
        va_list ap;                                                          \
        va_start(ap, flags);                                                 \
        if ((flags) & (O_CREAT | O_TMPFILE)) mode = (mode_t)va_arg(ap, int); \
        va_end(ap);                                                          \
    } while (0)

static int noted(int fd, int flags) {
    note_open(fd, flags);
    return fd;
}

int open(const char *path, int flags, ...) {
    MODE_ARG(flags);
    return noted(real_open(path, flags, mode), flags);
}
int open64(const char *path, int flags, ...) {
    MODE_ARG(flags);
    return noted(real_open(path, flags, mode), flags);
}
int openat(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags);
    return noted(real_openat(dirfd, path, flags, mode), flags);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags);
    return noted(real_openat(dirfd, path, flags, mode), flags);
}
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open(path, flags); }
int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
int __openat64_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }

static void log_write(int fd, off_t at, const struct iovec *iov, int iovcnt, ssize_t got) {
    if (got > 0)
        log_rec(REC_WRITE, tracked[fd] == 2 ? FLAG_DSYNC : 0, (uint64_t)at, iov, iovcnt,
                (uint64_t)got);
}

/* Where a write without an offset lands (O_APPEND: at the end). */
static off_t write_position(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND)) {
        struct stat st;
        return fstat(fd, &st) == 0 ? st.st_size : -1;
    }
    return lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t n) {
    if (!is_tracked(fd)) return real_write(fd, buf, n);
    off_t at = write_position(fd);
    ssize_t got = real_write(fd, buf, n);
    struct iovec v = {(void *)buf, n};
    log_write(fd, at, &v, 1, got);
    return got;
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    ssize_t got = real_pwrite(fd, buf, n, off);
    if (is_tracked(fd)) {
        struct iovec v = {(void *)buf, n};
        log_write(fd, off, &v, 1, got);
    }
    return got;
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }
ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    if (!is_tracked(fd)) return real_writev(fd, iov, iovcnt);
    off_t at = write_position(fd);
    ssize_t got = real_writev(fd, iov, iovcnt);
    log_write(fd, at, iov, iovcnt, got);
    return got;
}
ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    ssize_t got = real_pwritev(fd, iov, iovcnt, off);
    if (is_tracked(fd)) log_write(fd, off, iov, iovcnt, got);
    return got;
}
ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    return pwritev(fd, iov, iovcnt, off);
}

static int logged_flush(int fd, int (*flush)(int)) {
    if (!is_tracked(fd)) return flush(fd);
    uint64_t id = __atomic_add_fetch(&flush_ids, 1, __ATOMIC_SEQ_CST);
    log_rec(REC_FLUSH_BEGIN, 0, id, NULL, 0, 0);
    int rc = flush(fd);
    if (rc == 0) log_rec(REC_FLUSH_END, 0, id, NULL, 0, 0); /* a failed flush covers nothing */
    return rc;
}
int fsync(int fd) { return logged_flush(fd, real_fsync); }
int fdatasync(int fd) { return logged_flush(fd, real_fdatasync); }
int ftruncate(int fd, off_t size) {
    int rc = real_ftruncate(fd, size);
    if (rc == 0 && is_tracked(fd)) log_rec(REC_TRUNCATE, 0, (uint64_t)size, NULL, 0, 0);
    return rc;
}
int ftruncate64(int fd, off_t size) { return ftruncate(fd, size); }
int close(int fd) {
    if (fd >= 0 && fd < MAX_FD) tracked[fd] = 0;
    return real_close(fd);
}
