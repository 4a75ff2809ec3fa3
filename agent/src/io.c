/* Frames in and out of a connection, byte order, clocks and diagnostics. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Diagnostics go to the agent's stderr: the sandbox's log (docker logs), never to a command. */
void warnx_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("isorun-agent: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void die(const char *what) {
  warnx_("%s: %s", what, strerror(errno));
  exit(1);
}

void put_u32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

void put_u64(uint8_t *p, uint64_t v) {
  put_u32(p, (uint32_t)(v >> 32));
  put_u32(p + 4, (uint32_t)v);
}

uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) << 32 | get_u32(p + 4); }

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

char *payload_string(const uint8_t *p, size_t length) {
  if (memchr(p, 0, length)) return NULL;
  char *s = malloc(length + 1);
  if (!s) die("malloc");
  memcpy(s, p, length);
  s[length] = 0;
  return s;
}

void frame_reset(struct frame_in *in) {
  free(in->payload);
  memset(in, 0, sizeof *in);
}

/*
 * Reads what is available of the next frame. Returns 1 when `in` holds a complete frame (the caller
 * handles it, then calls frame_reset), 0 when more bytes are needed, -1 at EOF, on an error or on a
 * frame larger than the agent accepts.
 */
int read_frame(int fd, struct frame_in *in) {
  while (in->header_got < FRAME_HEADER) {
    ssize_t n = read(fd, in->header + in->header_got, FRAME_HEADER - in->header_got);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    in->header_got += n;
    if (in->header_got == FRAME_HEADER) {
      in->length = get_u32(in->header + 1);
      if (in->length > MAX_IN_PAYLOAD) return -1;
      in->payload = malloc(in->length ? in->length : 1);
      if (!in->payload) die("malloc");
    }
  }
  while (in->got < in->length) {
    ssize_t n = read(fd, in->payload + in->got, in->length - in->got);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    in->got += n;
  }
  return 1;
}

void out_frame(struct frame_out *out, uint8_t type, const void *payload, size_t length) {
  memcpy(out_begin(out, type), payload, length);
  out_commit(out, length);
}

uint8_t *out_begin(struct frame_out *out, uint8_t type) {
  out->data[0] = type;
  return out->data + FRAME_HEADER;
}

void out_commit(struct frame_out *out, size_t length) {
  put_u32(out->data + 1, (uint32_t)length);
  out->length = FRAME_HEADER + length;
  out->sent = 0;
}

int flush_out(int fd, struct frame_out *out) {
  while (out->sent < out->length) {
    ssize_t n = write(fd, out->data + out->sent, out->length - out->sent);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    out->sent += n;
  }
  out->length = out->sent = 0;
  return 1;
}
