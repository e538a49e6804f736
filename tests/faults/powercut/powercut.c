/*
 * powercut.so: an LD_PRELOAD shim that records every write to the watched files and
 * every flush of them, so a test can rebuild each as a power cut would leave it: only
 * writes a later flush (fsync/fdatasync of that file) covered, or writes through a
 * descriptor opened O_SYNC/O_DSYNC, survive. LevelDB's FaultInjectionTestEnv
 * ("drop unsynced data"), for a C library (LMDB) whose writes no Python seam sees.
 *
 * Environment: POWERCUT_FILE (the files to watch: absolute real paths separated by
 * ':', at most MAX_FILES) and POWERCUT_LOG (where records go, appended). A record's
 * `flags` carry the watched file's index in bits 8-15 (a flush covers only writes to
 * its own file). Record: struct rec, then `len` bytes
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
enum { FLAG_DSYNC = 1, FILE_SHIFT = 8, MAX_FILES = 4 };

struct rec {
    uint32_t kind;
    uint32_t flags;
    uint64_t offset; /* write: where; truncate: the new size; flush: its id */
    uint64_t len;    /* write: bytes that follow */
};

#define MAX_FD 65536
/* 0: not watched; else (file index + 1) | 0x80 if opened O_SYNC/O_DSYNC */
static unsigned char tracked[MAX_FD];
static char targets[MAX_FILES][PATH_MAX];
static int ntargets;
static int logfd = -1;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t flush_ids; /* atomic: the id of the last flush begun */

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
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
    real_pwritev2 = dlsym(RTLD_NEXT, "pwritev2"); /* what Python's os.pwritev calls */
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_close = dlsym(RTLD_NEXT, "close");
    const char *t = getenv("POWERCUT_FILE"), *l = getenv("POWERCUT_LOG");
    if (t == NULL || l == NULL) return; /* inert */
    const char *p = t;
    while (*p) {
        if (ntargets == MAX_FILES) abort(); /* an unwatched file would pass untested */
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n >= PATH_MAX) abort();
        memcpy(targets[ntargets], p, n);
        targets[ntargets++][n] = '\0';
        p += n + (end ? 1 : 0);
    }
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
    for (int i = 0; i < ntargets; i++)
        if (strcmp(path, targets[i]) == 0)
            tracked[fd] = (unsigned char)((i + 1) | ((flags & (O_SYNC | O_DSYNC)) ? 0x80 : 0));
}

static int is_tracked(int fd) { return fd >= 0 && fd < MAX_FD && tracked[fd]; }
/* The record flags of a watched descriptor: its file index, and O_(D)SYNC. */
static uint32_t fd_flags(int fd) {
    return ((uint32_t)((tracked[fd] & 0x7f) - 1) << FILE_SHIFT) |
           ((tracked[fd] & 0x80) ? FLAG_DSYNC : 0);
}

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
        log_rec(REC_WRITE, fd_flags(fd), (uint64_t)at, iov, iovcnt, (uint64_t)got);
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
ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
    if (real_pwritev2 == NULL) { /* a libc without it: as the missing call would fail */
        errno = ENOSYS;
        return -1;
    }
    /* off -1 writes at the file position, RWF_APPEND at its end; RWF_DSYNC/RWF_SYNC make
       this one write durable */
    off_t at = off;
    if ((flags & RWF_APPEND) && is_tracked(fd)) {
        struct stat st;
        at = fstat(fd, &st) == 0 ? st.st_size : -1;
    } else if (off == -1 && is_tracked(fd)) {
        at = write_position(fd);
    }
    ssize_t got = real_pwritev2(fd, iov, iovcnt, off, flags);
    if (is_tracked(fd) && got > 0) {
        uint32_t fl = fd_flags(fd) | ((flags & (RWF_DSYNC | RWF_SYNC)) ? FLAG_DSYNC : 0);
        log_rec(REC_WRITE, fl, (uint64_t)at, iov, iovcnt, (uint64_t)got);
    }
    return got;
}
ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
    return pwritev2(fd, iov, iovcnt, off, flags);
}

static int logged_flush(int fd, int (*flush)(int)) {
    if (!is_tracked(fd)) return flush(fd);
    uint64_t id = __atomic_add_fetch(&flush_ids, 1, __ATOMIC_SEQ_CST);
    uint32_t fl = fd_flags(fd) & ~(uint32_t)FLAG_DSYNC;
    log_rec(REC_FLUSH_BEGIN, fl, id, NULL, 0, 0);
    int rc = flush(fd);
    if (rc == 0) log_rec(REC_FLUSH_END, fl, id, NULL, 0, 0); /* a failed flush covers nothing */
    return rc;
}
int fsync(int fd) { return logged_flush(fd, real_fsync); }
int fdatasync(int fd) { return logged_flush(fd, real_fdatasync); }
int ftruncate(int fd, off_t size) {
    int rc = real_ftruncate(fd, size);
    if (rc == 0 && is_tracked(fd))
        log_rec(REC_TRUNCATE, fd_flags(fd) & ~(uint32_t)FLAG_DSYNC, (uint64_t)size, NULL, 0, 0);
    return rc;
}
int ftruncate64(int fd, off_t size) { return ftruncate(fd, size); }
int close(int fd) {
    if (fd >= 0 && fd < MAX_FD) tracked[fd] = 0;
    return real_close(fd);
}
