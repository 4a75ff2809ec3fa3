/*
 * isorun-agent: runs commands and moves files inside a sandbox for the emulator, without the container
 * runtime's per-exec setup. See agent/README.md for the design and docs/agent.md for the protocol.
 *
 * One process, one poll() loop, no threads, no epoll, no timers or signalfds: the agent is part of the
 * sandbox's process tree, so CRIU checkpoints it with the sandbox, and these are the objects it handles
 * best. Every descriptor is close-on-exec; commands inherit only their own stdio.
 */
#ifndef ISORUN_AGENT_H
#define ISORUN_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTOCOL_VERSION 1

/* A frame: type (1 byte), payload length (4 bytes, big-endian), payload. */
#define FRAME_HEADER 5
/* Largest payload the agent sends (output, file and listing chunks). */
#define CHUNK 65536
/* Largest payload the agent accepts: an exec request carries its command line (Linux caps one argument
 * at 128 KiB anyway); file bodies come in chunks of at most CHUNK. */
#define MAX_IN_PAYLOAD (2u * 1024 * 1024)
#define ID_LEN 16
#define MAX_CALLS 256

/* Emulator -> agent. Requests arrive on a spare connection; the others on a call's connection. */
#define REQ_EXEC 'X'  /* id, u32 output limit, command line */
#define REQ_READ 'G'  /* id, path */
#define REQ_WRITE 'P' /* id, u64 size, path; then BODY frames adding up to size */
#define REQ_LIST 'L'  /* id, path */
#define CTL_KILL 'K'     /* kill the command and every process it started */
#define CTL_DETACH 'D'   /* stop using this connection (a checkpoint is coming); reconnect later */
#define CTL_CONTINUE 'C' /* answer to RESUME: carry on */
#define CTL_ABANDON 'A'  /* answer to RESUME: the emulator no longer knows this call; drop it */

/* Agent -> emulator. */
#define MSG_HELLO 'H'    /* u8 version, u32 uid, u32 pid: a spare connection, ready for one request */
#define MSG_RESUME 'R'   /* id: a detached call reconnecting */
#define MSG_STDOUT '1'
#define MSG_STDERR '2'
#define MSG_EXIT 'E'     /* i32 exit code (128+signal if killed), u64 stdout bytes, u64 stderr bytes */
#define MSG_SIZE 'S'     /* u64: the size of the file about to be sent */
#define MSG_END 'Z'      /* a listing is complete, or a write is done */
#define MSG_FAIL 'F'     /* u8 code (FAIL_*), message */
#define MSG_DETACHED 'Y' /* the last frame on a detached connection */
#define BODY 'B'         /* file bytes (either way) or NUL-separated names of a listing */

#define FAIL_NOT_FOUND 1
#define FAIL_NOT_A_FILE 2
#define FAIL_NOT_A_DIRECTORY 3
#define FAIL_OTHER 4
#define FAIL_CHANGED 5 /* the file changed size while it was read */
#define FAIL_UNWRITABLE 6 /* the file system refuses the write: "busy", "read-only", "not-permitted" */

enum call_kind { CALL_EXEC, CALL_READ, CALL_WRITE, CALL_LIST };

enum link_state {
  LINK_ATTACHED,  /* talking to the emulator */
  LINK_DETACHING, /* DETACH received: flushing, then DETACHED frame, then close */
  LINK_DETACHED,  /* no connection; reconnect with RESUME */
  LINK_RESUMING,  /* reconnected, waiting for CONTINUE or ABANDON */
  LINK_ORPHANED,  /* the emulator went away without DETACH: finish quietly, send nothing */
};

/* A frame being read from a connection. */
struct frame_in {
  uint8_t header[FRAME_HEADER];
  size_t header_got;
  uint8_t *payload;
  uint32_t length;
  uint32_t got;
};

/* Bytes waiting to be written to a connection; a call produces more only once this is empty. */
struct frame_out {
  uint8_t data[FRAME_HEADER + CHUNK];
  size_t length;
  size_t sent;
};

struct call {
  uint8_t id[ID_LEN];
  enum call_kind kind;
  enum link_state link;
  int sock;
  struct frame_in in;
  struct frame_out out;
  bool finished; /* the last frame is queued: close once it is sent */
  bool half_closed; /* finished and sent: waiting for the emulator to close */
  bool dead;     /* released; the loop frees it before its next poll */
  int slot[3];   /* its entries in the loop's poll set: socket, stdout, stderr (-1: none) */
  uint64_t detached_at;
  bool detach_queued; /* DETACHED is in `out`: close once it is sent */

  /* exec */
  pid_t pid;
  int pipe_fd[2]; /* read ends of the command's stdout and stderr, -1 once closed */
  bool exited;
  int exit_code;
  uint64_t exited_at_ms;
  uint32_t limit;
  uint64_t total[2]; /* bytes the command wrote to each stream */
  uint64_t kept[2];  /* of which sent (at most limit) */
  char marker[2 * 8 + 1];

  /* read and write */
  int file_fd;
  uint64_t remaining;
  char *tmp_path;
  char *path;

  /* list */
  void *dir; /* DIR * */
};

/* io.c */
uint64_t now_ms(void);
void die(const char *what);
void warnx_(const char *fmt, ...);
int read_frame(int fd, struct frame_in *in); /* 1 complete, 0 need more, -1 EOF or error */
void frame_reset(struct frame_in *in);
void out_frame(struct frame_out *out, uint8_t type, const void *payload, size_t length);
uint8_t *out_begin(struct frame_out *out, uint8_t type); /* room for CHUNK bytes of payload */
void out_commit(struct frame_out *out, size_t length);
int flush_out(int fd, struct frame_out *out); /* 1 all sent, 0 would block, -1 error */
void put_u32(uint8_t *p, uint32_t v);
void put_u64(uint8_t *p, uint64_t v);
uint32_t get_u32(const uint8_t *p);
uint64_t get_u64(const uint8_t *p);
char *payload_string(const uint8_t *p, size_t length); /* NUL-terminated copy; NULL if it holds a NUL */
void set_nonblocking(int fd);

/* exec.c */
int exec_start(struct call *c, const char *command);
void exec_kill_tree(struct call *c);
void exec_reaped(struct call *c, int status);
bool exec_produce(struct call *c, int which); /* reads one chunk from pipe `which`; false at EOF */
bool exec_done(const struct call *c, uint64_t now);
uint64_t exec_deadline(const struct call *c);
void exec_release(struct call *c);

/* files.c */
void file_read_start(struct call *c, const char *path);
bool file_read_produce(struct call *c);
void file_write_start(struct call *c, const char *path, uint64_t size);
void file_write_body(struct call *c, const uint8_t *data, size_t length);
void file_write_abort(struct call *c);
void list_start(struct call *c, const char *path);
bool list_produce(struct call *c);
void call_fail(struct call *c, int code, const char *message, int err);
void files_release(struct call *c);

/* loop.c */
int serve(const char *socket_path);

#endif
