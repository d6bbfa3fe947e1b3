/* madvise (MADV_DONTNEED: Linux's; posix_madvise's variant is a no-op in glibc) */
#define _DEFAULT_SOURCE
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>
#include <zlib.h>

#include "base/buf.h"

static int inflate_gzip(const char *path, const unsigned char *src, size_t n, char **out,
                        size_t *len, cast_err *err) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return cast_fail(err, "%s: cannot start gzip inflate", path);
    cast_buf b = {0};
    zs.next_in = (unsigned char *)src;
    zs.avail_in = (uInt)n;
    int rc;
    do {
        cast_buf_reserve(&b, 1 << 20);
        zs.next_out = (unsigned char *)b.data + b.len;
        zs.avail_out = (uInt)(b.cap - b.len - 1);
        rc = inflate(&zs, Z_NO_FLUSH);
        b.len = b.cap - 1 - zs.avail_out;
        if (rc == Z_STREAM_END && zs.avail_in > 0) {
            /* concatenated gzip members */
            inflateReset(&zs);
            rc = Z_OK;
        }
    } while (rc == Z_OK);
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        cast_buf_free(&b);
        return cast_fail(err, "%s: corrupt or truncated gzip data", path);
    }
    b.data[b.len] = 0;
    *len = b.len;
    *out = cast_buf_steal(&b);
    return 0;
}

int cast_read_file(const char *path, char **out, size_t *len, cast_err *err) {
    *out = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cast_fail_as(err, CAST_E_IO, "%s: %s", path, strerror(errno));
    cast_buf b = {0};
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) cast_buf_append(&b, chunk, n);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        cast_buf_free(&b);
        return cast_fail(err, "%s: read error", path);
    }
    if (b.len >= 2 && (unsigned char)b.data[0] == 0x1f && (unsigned char)b.data[1] == 0x8b) {
        int rc = inflate_gzip(path, (unsigned char *)b.data, b.len, out, len, err);
        cast_buf_free(&b);
        return rc;
    }
    cast_buf_reserve(&b, 0);
    b.data[b.len] = 0;
    *len = b.len;
    *out = cast_buf_steal(&b);
    return 0;
}

void cast_mmap_drop(const void *p, size_t bytes) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1),
              hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int cast_mmap_open(cast_mmap *m, const char *path, cast_err *err) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cast_fail_as(err, CAST_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cast_fail(err, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        close(fd);
        return 0;
    }
    void *p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        m->size = 0;
        return cast_fail_as(err, CAST_E_IO, "%s: mmap failed: %s", path, strerror(errno));
    }
    m->data = p;
    return 0;
}

void cast_mmap_close(cast_mmap *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int cast_atomic_open(cast_atomic *a, const char *path, cast_err *err) {
    memset(a, 0, sizeof *a);
    a->path = cast_xstrdup(path);
    size_t n = strlen(path) + 32;
    a->tmp_path = cast_xmalloc(n);
    snprintf(a->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    a->fp = fopen(a->tmp_path, "wb");
    if (!a->fp) {
        int e = errno;
        free(a->path);
        free(a->tmp_path);
        memset(a, 0, sizeof *a);
        return cast_fail_as(err, CAST_E_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int cast_atomic_commit(cast_atomic *a, cast_err *err) {
    int bad = ferror(a->fp);
    if (fflush(a->fp) != 0) bad = 1;
    if (!bad && fsync(fileno(a->fp)) != 0) bad = 1;
    if (fclose(a->fp) != 0) bad = 1;
    a->fp = NULL;
    int rc = 0;
    if (bad) {
        unlink(a->tmp_path);
        rc = cast_fail_as(err, CAST_E_IO, "%s: write failed: %s", a->path, strerror(errno));
    } else if (rename(a->tmp_path, a->path) != 0) {
        unlink(a->tmp_path);
        rc = cast_fail_as(err, CAST_E_IO, "%s: rename failed: %s", a->path, strerror(errno));
    }
    free(a->path);
    free(a->tmp_path);
    a->path = a->tmp_path = NULL;
    return rc;
}

void cast_atomic_abort(cast_atomic *a) {
    if (a->fp) fclose(a->fp);
    if (a->tmp_path) unlink(a->tmp_path);
    free(a->path);
    free(a->tmp_path);
    memset(a, 0, sizeof *a);
}

int cast_write_file_atomic(const char *path, const void *data, size_t len, cast_err *err) {
    cast_atomic a;
    if (cast_atomic_open(&a, path, err)) return -1;
    if (len && fwrite(data, 1, len, a.fp) != len) {
        cast_atomic_abort(&a);
        return cast_fail(err, "%s: write failed", path);
    }
    return cast_atomic_commit(&a, err);
}

int cast_write_files_atomic(const char *dir, const cast_named_text *files, int n, cast_err *err) {
    if (cast_mkdirs(dir, err)) return -1;
    cast_atomic *out = calloc((size_t)(n > 0 ? n : 1), sizeof *out);
    if (!out) return cast_fail(err, "%s: out of memory", dir);
    int opened = 0, rc = 0;
    while (opened < n && rc == 0) {
        char *path = cast_path_join(dir, files[opened].name);
        rc = cast_atomic_open(&out[opened], path, err);
        free(path);
        if (rc) break;
        if (fwrite(files[opened].data, 1, files[opened].len, out[opened].fp) != files[opened].len)
            rc = cast_fail(err, "%s/%s: write failed", dir, files[opened].name);
        opened++;
    }
    for (int i = 0; i < opened; i++) {
        if (rc) cast_atomic_abort(&out[i]);
        else if (cast_atomic_commit(&out[i], err)) rc = -1;
    }
    free(out);
    return rc;
}

int cast_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cast_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cast_mkdirs(const char *path, cast_err *err) {
    char *p = cast_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return cast_fail_as(err, CAST_E_IO, "%s: cannot create folder: %s", path, strerror(e));
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = cast_fail_as(err, CAST_E_IO, "%s: cannot create folder: %s", path, strerror(errno));
    else if (!cast_dir_exists(p)) rc = cast_fail(err, "%s: exists and is not a folder", path);
    free(p);
    return rc;
}

char *cast_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = cast_xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int cast_copy_file(const char *src, const char *dst, cast_err *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return cast_fail_as(err, CAST_E_IO, "%s: %s", src, strerror(errno));
    cast_atomic a;
    if (cast_atomic_open(&a, dst, err)) {
        fclose(in);
        return -1;
    }
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0) {
        if (fwrite(chunk, 1, n, a.fp) != n) break;
    }
    int bad = ferror(in);
    fclose(in);
    if (bad) {
        cast_atomic_abort(&a);
        return cast_fail(err, "%s: read error", src);
    }
    return cast_atomic_commit(&a, err);
}

/* ---- output folders ------------------------------------------------------------ */

/* Appends one path component to an absolute path, resolving "." and ".." by name. */
static void push_component(cast_buf *b, const char *c, size_t n) {
    if (n == 0 || (n == 1 && c[0] == '.')) return;
    if (n == 2 && c[0] == '.' && c[1] == '.') {
        while (b->len > 1 && b->data[b->len - 1] != '/') b->len--;
        if (b->len > 1) b->len--; /* the slash, unless it is the root */
        b->data[b->len] = 0;
        return;
    }
    if (b->len == 0 || b->data[b->len - 1] != '/') cast_buf_append(b, "/", 1);
    cast_buf_append(b, c, n);
}

char *cast_path_real(const char *path) {
    char *r = realpath(path, NULL);
    if (r) return r;
    /* the deepest existing ancestor by real path, then the rest by name */
    cast_buf abs = {0};
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return NULL;
        cast_buf_puts(&abs, cwd);
        cast_buf_puts(&abs, "/");
    }
    cast_buf_puts(&abs, path);
    char *p = abs.data;
    size_t n = abs.len;
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    size_t cut = n; /* the ancestor is p[0..cut-1) ("/" when cut is 1), the rest p[cut..n) */
    char *base = NULL;
    while (!base) {
        while (cut > 0 && p[cut - 1] != '/') cut--; /* drop the last component */
        if (cut == 0) break;
        size_t end = cut == 1 ? 1 : cut - 1;
        char save = p[end];
        p[end] = 0;
        base = realpath(p, NULL);
        p[end] = save;
        if (!base) cut--;
    }
    if (!base) {
        cast_buf_free(&abs);
        return NULL;
    }
    cast_buf out = {0};
    cast_buf_puts(&out, base);
    free(base);
    for (size_t i = cut; i < n;) {
        size_t j = i;
        while (j < n && p[j] != '/') j++;
        push_component(&out, p + i, j - i);
        i = j + 1;
    }
    cast_buf_free(&abs);
    return cast_buf_steal(&out);
}

cast_path_rel cast_path_relation(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino) return CAST_PATH_SAME;
    char *ra = cast_path_real(a), *rb = cast_path_real(b);
    cast_path_rel rel = CAST_PATH_UNRELATED;
    if (ra && rb) {
        size_t na = strlen(ra), nb = strlen(rb);
        /* "/x" is inside "/" and inside "/x/"-prefixed names only at a slash */
        if (!strcmp(ra, rb)) rel = CAST_PATH_SAME;
        else if (na > nb && !strncmp(ra, rb, nb) && (ra[nb] == '/' || !strcmp(rb, "/"))) rel = CAST_PATH_INSIDE;
        else if (nb > na && !strncmp(ra, rb, na) && (rb[na] == '/' || !strcmp(ra, "/"))) rel = CAST_PATH_CONTAINS;
    }
    free(ra);
    free(rb);
    return rel;
}

int cast_dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int empty = 1;
    struct dirent *e;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    CAST_UNUSED(st);
    CAST_UNUSED(flag);
    CAST_UNUSED(ftw);
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int cast_remove_tree(const char *path, cast_err *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : cast_fail_as(err, CAST_E_IO, "%s: %s", path, strerror(errno));
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) return cast_fail_as(err, CAST_E_IO, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

/* final with a suffix: "final.<what>.<pid>", trailing slashes dropped */
static char *sibling_name(const char *final, const char *what) {
    size_t n = strlen(final);
    while (n > 1 && final[n - 1] == '/') n--;
    cast_buf b = {0};
    cast_buf_append(&b, final, n);
    cast_buf_printf(&b, ".%s.%ld", what, (long)getpid());
    return cast_buf_steal(&b);
}

int cast_stage_dir(const char *final, char **stage, cast_err *err) {
    *stage = sibling_name(final, "tmp");
    /* a leftover of an earlier run with the same pid is ours to clear */
    int rc = cast_remove_tree(*stage, err);
    if (!rc && mkdir(*stage, 0755) != 0) rc = cast_fail_as(err, CAST_E_IO, "%s: cannot create folder: %s", *stage, strerror(errno));
    if (rc) {
        free(*stage);
        *stage = NULL;
    }
    return rc;
}

int cast_stage_commit(const char *final, const char *stage, cast_err *err) {
    char *old = sibling_name(final, "old");
    int rc = -1;
    if (cast_remove_tree(old, err)) goto done;
    int had = access(final, F_OK) == 0;
    if (had && rename(final, old) != 0) {
        cast_fail_as(err, CAST_E_IO, "%s: cannot move the old folder aside: %s", final, strerror(errno));
        goto done;
    }
    if (rename(stage, final) != 0) {
        int e = errno;
        if (had) rename(old, final); /* put the old output back */
        cast_fail_as(err, CAST_E_IO, "%s: cannot move the new folder in place: %s", final, strerror(e));
        goto done;
    }
    rc = had ? cast_remove_tree(old, err) : 0;
done:
    free(old);
    return rc;
}
