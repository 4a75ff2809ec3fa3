/*
 * Files: read one (following symlinks), write one (parents created, replaced atomically), list a
 * directory. Paths are the sandbox's own, resolved as its processes see them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

void call_fail(struct call *c, int code, const char *message, int err) {
  uint8_t *p = out_begin(&c->out, MSG_FAIL);
  p[0] = (uint8_t)code;
  int n = snprintf((char *)p + 1, CHUNK - 1, err ? "%s: %s" : "%s", message, strerror(err));
  out_commit(&c->out, 1 + (size_t)(n < CHUNK - 1 ? n : CHUNK - 2));
  c->finished = true;
}

static bool absolute(struct call *c, const char *path) {
  if (path[0] == '/') return true;
  call_fail(c, FAIL_OTHER, "path must be absolute", 0);
  return false;
}

void file_read_start(struct call *c, const char *path) {
  if (!absolute(c, path)) return;
  /* Non-blocking, so that opening a FIFO cannot hang the agent; the type is checked right after. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) call_fail(c, FAIL_NOT_FOUND, path, 0);
    else if (errno == ELOOP || errno == ENXIO) call_fail(c, FAIL_NOT_A_FILE, path, 0);
    else call_fail(c, FAIL_OTHER, path, errno);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    call_fail(c, FAIL_NOT_A_FILE, path, 0);
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  c->file_fd = fd;
  c->remaining = (uint64_t)st.st_size;
  uint8_t size[8];
  put_u64(size, c->remaining);
  out_frame(&c->out, MSG_SIZE, size, sizeof size);
}

/*
 * Sends the next chunk: exactly the size announced, then END. A file that turns out shorter or longer
 * than announced fails the read (as the engine's archive does), rather than passing for whole. False
 * once finished.
 */
bool file_read_produce(struct call *c) {
  if (c->remaining == 0) {
    char more;
    ssize_t n = read(c->file_fd, &more, 1);
    if (n > 0) call_fail(c, FAIL_CHANGED, "the file grew while it was read", 0);
    else out_frame(&c->out, MSG_END, NULL, 0);
    c->finished = true;
    return false;
  }
  size_t want = c->remaining < CHUNK ? (size_t)c->remaining : CHUNK;
  ssize_t n = read(c->file_fd, out_begin(&c->out, BODY), want);
  if (n < 0 && errno == EINTR) return true;
  if (n < 0) {
    call_fail(c, FAIL_OTHER, "reading the file failed", errno);
    return false;
  }
  if (n == 0) {
    call_fail(c, FAIL_CHANGED, "the file shrank while it was read", 0);
    return false;
  }
  out_commit(&c->out, (size_t)n);
  c->remaining -= (uint64_t)n;
  return true;
}

/* A refusal of the file system rather than a fault (a file the engine bind-mounts, a read-only mount),
 * as FAIL_UNWRITABLE names it; NULL for other errors. */
static const char *unwritable(int err) {
  return err == EBUSY ? "busy" : err == EROFS ? "read-only" : err == EPERM ? "not-permitted" : NULL;
}

/* Fails a write with `err`: a refusal of the file system, or another error. */
static void write_failed(struct call *c, const char *path, int err) {
  if (unwritable(err)) call_fail(c, FAIL_UNWRITABLE, unwritable(err), 0);
  else call_fail(c, FAIL_OTHER, path, err);
}

/* mkdir -p of `dir` (0755 for what it creates). A component that exists and is no directory fails. */
static int make_parents(struct call *c, char *dir) {
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != 0) continue;
    char saved = *p;
    *p = 0;
    if (mkdir(dir, 0755) == 0) {
      chmod(dir, 0755);
    } else {
      struct stat st;
      if (errno != EEXIST || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        int err = errno;
        if (err == EEXIST || err == ENOTDIR) call_fail(c, FAIL_NOT_A_DIRECTORY, dir, 0);
        else write_failed(c, dir, err);
        *p = saved;
        return -1;
      }
    }
    *p = saved;
    if (saved == 0) return 0;
  }
}

/*
 * Written to a temporary file beside the target, then renamed over it: readers see the old content or
 * the new one, never a part, and the file is new (mode 0644, owned by the agent's user), as the
 * engine's archive API leaves it.
 */
void file_write_start(struct call *c, const char *path, uint64_t size) {
  if (!absolute(c, path)) return;
  const char *slash = strrchr(path, '/');
  struct stat st;
  /* A directory, or a link to one (`/tmp`, `/..`, `/work/.`), is never replaced. */
  if (slash[1] == 0 || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
    call_fail(c, FAIL_NOT_A_FILE, path, 0);
    return;
  }
  size_t dir_len = slash == path ? 1 : (size_t)(slash - path);
  char *dir = strndup(path, dir_len);
  c->path = strdup(path);
  c->tmp_path = malloc(strlen(path) + 40);
  if (!dir || !c->path || !c->tmp_path) die("malloc");
  if (make_parents(c, dir) < 0) {
    free(dir);
    return;
  }
  sprintf(c->tmp_path, "%s%s.isorun-upload-", dir, dir_len == 1 ? "" : "/");
  for (int i = 0; i < 8; i++) sprintf(c->tmp_path + strlen(c->tmp_path), "%02x", c->id[i]);
  free(dir);
  c->file_fd = open(c->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (c->file_fd < 0) {
    int err = errno;
    free(c->tmp_path);
    c->tmp_path = NULL;
    write_failed(c, path, err);
    return;
  }
  fchmod(c->file_fd, 0644);
  c->remaining = size;
  file_write_body(c, NULL, 0);
}

void file_write_abort(struct call *c) {
  if (c->file_fd >= 0) close(c->file_fd);
  c->file_fd = -1;
  if (c->tmp_path) unlink(c->tmp_path);
  free(c->tmp_path);
  c->tmp_path = NULL;
}

void file_write_body(struct call *c, const uint8_t *data, size_t length) {
  if (c->finished) return;
  if (length > c->remaining) {
    file_write_abort(c);
    call_fail(c, FAIL_OTHER, "more bytes than announced", 0);
    return;
  }
  while (length > 0) {
    ssize_t n = write(c->file_fd, data, length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      file_write_abort(c);
      call_fail(c, FAIL_OTHER, c->path, err);
      return;
    }
    data += n;
    length -= (size_t)n;
    c->remaining -= (uint64_t)n;
  }
  if (c->remaining > 0) return;
  int closed = close(c->file_fd);
  c->file_fd = -1;
  if (closed < 0) {
    int err = errno;
    file_write_abort(c);
    call_fail(c, FAIL_OTHER, c->path, err);
    return;
  }
  if (rename(c->tmp_path, c->path) < 0) {
    int err = errno;
    file_write_abort(c);
    if (err == EISDIR || err == ENOTEMPTY || err == EEXIST) call_fail(c, FAIL_NOT_A_FILE, c->path, 0);
    else write_failed(c, c->path, err);
    return;
  }
  free(c->tmp_path);
  c->tmp_path = NULL;
  out_frame(&c->out, MSG_END, NULL, 0);
  c->finished = true;
}

void list_start(struct call *c, const char *path) {
  if (!absolute(c, path)) return;
  DIR *d = opendir(path);
  if (!d) {
    if (errno == ENOENT) call_fail(c, FAIL_NOT_FOUND, path, 0);
    else if (errno == ENOTDIR) call_fail(c, FAIL_NOT_A_DIRECTORY, path, 0);
    else call_fail(c, FAIL_OTHER, path, errno);
    return;
  }
  c->dir = d;
}

/* Names, each followed by a NUL, in chunks; then END. False once finished. */
bool list_produce(struct call *c) {
  uint8_t *buf = out_begin(&c->out, BODY);
  size_t used = 0;
  struct dirent *e;
  /* A name is at most 255 bytes: stop while one more surely fits. */
  while (used + 257 <= CHUNK && (e = readdir(c->dir))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    size_t len = strlen(e->d_name) + 1;
    memcpy(buf + used, e->d_name, len);
    used += len;
  }
  if (used > 0) {
    out_commit(&c->out, used);
    return true;
  }
  closedir(c->dir);
  c->dir = NULL;
  out_frame(&c->out, MSG_END, NULL, 0);
  c->finished = true;
  return false;
}

void files_release(struct call *c) {
  if (c->kind == CALL_WRITE && !c->finished) file_write_abort(c);
  if (c->file_fd >= 0) close(c->file_fd);
  c->file_fd = -1;
  if (c->dir) closedir(c->dir);
  c->dir = NULL;
  free(c->tmp_path);
  free(c->path);
  c->tmp_path = c->path = NULL;
}
