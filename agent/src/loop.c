/*
 * The agent's loop. The agent dials the emulator (a Unix socket the emulator listens on, in a directory
 * only this sandbox has mounted) and keeps one idle "spare" connection open. A request arriving on the
 * spare turns that connection into a call; the agent dials a new spare at once. Each call has its own
 * connection, so the kernel's socket buffers give flow control and no multiplexing is needed.
 *
 * Before a checkpoint the emulator sends DETACH on every connection and stops listening: CRIU cannot
 * checkpoint a socket connected to a process outside the sandbox. Calls in flight keep their state and
 * reconnect with RESUME once the emulator listens again; the emulator answers CONTINUE, or ABANDON when
 * it does not know the call (a restored copy reconnects to its own sandbox's emulator side, which never
 * heard of its parent's calls): an abandoned command is killed, as the copy was never meant to run it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

/* Redial quickly for a while after losing the emulator (a checkpoint takes a moment), then slowly. */
#define FAST_RETRY_MS 2
#define SLOW_RETRY_MS 250
#define FAST_PHASE_MS 3000
/* Waking this much later than planned means the sandbox was frozen or restored: redial quickly again. */
#define OVERSLEPT_MS 500
/* A call detached for a checkpoint that no emulator picks up again is abandoned after this long. */
#define DETACHED_GIVE_UP_MS (5 * 60 * 1000)

static struct sockaddr_un address;
static struct call *calls[MAX_CALLS];
static int ncalls;
static int spare = -1;
static struct frame_in spare_in;
static uint64_t next_dial;
static bool failing;
static uint64_t failing_since;
static int sigchld_pipe[2] = {-1, -1};

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  (void)!write(sigchld_pipe[1], "", 1);
  errno = saved;
}

static int dial(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends a small frame on a fresh connection, whose buffer is empty: it goes in one write. */
static bool greet(int fd, uint8_t type, const uint8_t *payload, size_t length) {
  uint8_t frame[FRAME_HEADER + 32];
  frame[0] = type;
  put_u32(frame + 1, (uint32_t)length);
  memcpy(frame + FRAME_HEADER, payload, length);
  return write(fd, frame, FRAME_HEADER + length) == (ssize_t)(FRAME_HEADER + length);
}

static void dialled(bool ok, uint64_t now) {
  if (ok) {
    failing = false;
    return;
  }
  if (!failing) failing_since = now;
  failing = true;
  next_dial = now + (now - failing_since < FAST_PHASE_MS ? FAST_RETRY_MS : SLOW_RETRY_MS);
}

/* Releases what a call holds; the loop frees the call itself before its next poll. */
static void end_call(struct call *c) {
  if (c->sock >= 0) close(c->sock);
  c->sock = -1;
  frame_reset(&c->in);
  if (c->kind == CALL_EXEC) exec_release(c);
  else files_release(c);
  c->dead = true;
}

/* The emulator no longer wants this call: its command dies with everything it started. */
static void abandon(struct call *c) {
  if (c->kind == CALL_EXEC) exec_kill_tree(c);
  end_call(c);
}

static void lose_connection(struct call *c, uint64_t now) {
  close(c->sock);
  c->sock = -1;
  frame_reset(&c->in);
  c->out.length = c->out.sent = 0;
  c->detach_queued = false;
  if (c->link == LINK_DETACHING || c->link == LINK_RESUMING) {
    /* Cut short while detaching (the emulator waits only so long) or resuming: the call still waits
     * to RESUME, and the emulator will answer. */
    if (c->link == LINK_DETACHING) c->detached_at = now;
    c->link = LINK_DETACHED;
    return;
  }
  /* The emulator went away without DETACH (it stopped, or gave up on the call): finish quietly. */
  c->link = LINK_ORPHANED;
}

static struct call *new_call(int sock, const uint8_t *id) {
  struct call *c = calloc(1, sizeof *c);
  if (!c) die("malloc");
  memcpy(c->id, id, ID_LEN);
  c->sock = sock;
  c->link = LINK_ATTACHED;
  c->file_fd = -1;
  c->pipe_fd[0] = c->pipe_fd[1] = -1;
  c->slot[0] = c->slot[1] = c->slot[2] = -1;
  return c;
}

/* A request arrived on the spare connection, which becomes the call's own. */
static void start_call(const struct frame_in *f, uint64_t now) {
  int sock = spare;
  spare = -1;
  next_dial = now; /* a new spare right away */
  uint8_t type = f->header[0];
  uint32_t min = type == REQ_EXEC ? ID_LEN + 4 : type == REQ_WRITE ? ID_LEN + 8 : ID_LEN;
  bool known = type == REQ_EXEC || type == REQ_READ || type == REQ_WRITE || type == REQ_LIST;
  if (!known || f->length < min) {
    close(sock);
    return;
  }
  struct call *c = new_call(sock, f->payload);
  c->kind = type == REQ_EXEC ? CALL_EXEC : type == REQ_READ ? CALL_READ : type == REQ_WRITE ? CALL_WRITE : CALL_LIST;
  if (ncalls == MAX_CALLS) {
    call_fail(c, FAIL_OTHER, "too many calls in flight", 0);
    flush_out(sock, &c->out);
    close(sock);
    free(c);
    return;
  }
  calls[ncalls++] = c;
  char *text = payload_string(f->payload + min, f->length - min);
  if (!text) {
    call_fail(c, FAIL_OTHER, "a NUL byte in the request", 0);
    return;
  }
  switch (c->kind) {
  case CALL_EXEC:
    c->limit = get_u32(f->payload + ID_LEN);
    if (exec_start(c, text) < 0) call_fail(c, FAIL_OTHER, "cannot start /bin/sh", errno);
    break;
  case CALL_READ:
    file_read_start(c, text);
    break;
  case CALL_WRITE:
    file_write_start(c, text, get_u64(f->payload + ID_LEN));
    break;
  case CALL_LIST:
    list_start(c, text);
    break;
  }
  free(text);
}

/* A frame from the emulator on a call's connection. */
static void on_frame(struct call *c, const struct frame_in *f) {
  switch (f->header[0]) {
  case CTL_KILL:
    if (c->kind == CALL_EXEC && c->pid > 0) exec_kill_tree(c);
    break;
  case CTL_DETACH:
    if (c->link == LINK_ATTACHED) c->link = LINK_DETACHING;
    break;
  case CTL_CONTINUE:
    if (c->link == LINK_RESUMING) c->link = LINK_ATTACHED;
    break;
  case CTL_ABANDON:
    abandon(c);
    break;
  case BODY:
    if (c->kind == CALL_WRITE && !c->finished) file_write_body(c, f->payload, f->length);
    break;
  default:
    lose_connection(c, now_ms()); /* not this protocol */
  }
}

static void read_frames(struct call *c) {
  while (!c->dead && c->sock >= 0) {
    int r = read_frame(c->sock, &c->in);
    if (r == 0) return;
    if (r < 0 && c->half_closed) {
      end_call(c);
      return;
    }
    if (r < 0) {
      lose_connection(c, now_ms());
      return;
    }
    if (c->half_closed) {
      frame_reset(&c->in); /* the rest of a body nobody needs any more */
      continue;
    }
    on_frame(c, &c->in);
    frame_reset(&c->in);
  }
}

static void reap(void) {
  char drain[64];
  while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {
  }
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < ncalls; i++)
      if (!calls[i]->dead && calls[i]->kind == CALL_EXEC && calls[i]->pid == pid) exec_reaped(calls[i], status);
  }
}

static void dial_if_due(uint64_t now) {
  bool needed = spare < 0;
  for (int i = 0; i < ncalls; i++) needed |= !calls[i]->dead && calls[i]->link == LINK_DETACHED;
  if (!needed || now < next_dial) return;
  if (spare < 0) {
    spare = dial();
    uint8_t hello[9] = {PROTOCOL_VERSION};
    put_u32(hello + 1, (uint32_t)geteuid());
    put_u32(hello + 5, (uint32_t)getpid());
    if (spare >= 0 && !greet(spare, MSG_HELLO, hello, sizeof hello)) {
      close(spare);
      spare = -1;
    }
    dialled(spare >= 0, now);
    if (spare < 0) {
      /* Nobody to resume with either; a call detached too long is given up. */
      for (int i = 0; i < ncalls; i++) {
        struct call *c = calls[i];
        if (!c->dead && c->link == LINK_DETACHED && now - c->detached_at > DETACHED_GIVE_UP_MS) abandon(c);
      }
      return;
    }
  }
  for (int i = 0; i < ncalls; i++) {
    struct call *c = calls[i];
    if (c->dead || c->link != LINK_DETACHED) continue;
    int fd = dial();
    if (fd >= 0 && greet(fd, MSG_RESUME, c->id, ID_LEN)) {
      c->sock = fd;
      c->link = LINK_RESUMING;
      continue;
    }
    if (fd >= 0) close(fd);
    dialled(false, now);
  }
}

/* Sends DETACHED, then drops the connection; the call waits to RESUME. */
static void detach(struct call *c, uint64_t now) {
  if (!c->detach_queued) {
    out_frame(&c->out, MSG_DETACHED, NULL, 0);
    c->detach_queued = true;
    if (flush_out(c->sock, &c->out) == 0) return; /* it goes out later; then closed on the next pass */
  }
  close(c->sock);
  c->sock = -1;
  frame_reset(&c->in);
  c->out.length = c->out.sent = 0;
  c->detach_queued = false;
  c->link = LINK_DETACHED;
  c->detached_at = now;
  if (next_dial > now + FAST_RETRY_MS || next_dial < now) next_dial = now + FAST_RETRY_MS;
}

static void exec_advance(struct call *c, uint64_t now) {
  for (int which = 0; which < 2 && c->out.length == 0; which++) {
    int k = c->slot[1 + which];
    if (k >= 0 && c->pipe_fd[which] >= 0) exec_produce(c, which);
  }
  if (c->link == LINK_ORPHANED) c->out.length = 0; /* nobody to send it to */
  if (c->out.length > 0 || !exec_done(c, now)) return;
  exec_release(c);
  if (c->link == LINK_ORPHANED) {
    end_call(c);
    return;
  }
  uint8_t exit[20];
  put_u32(exit, (uint32_t)c->exit_code);
  put_u64(exit + 4, c->total[0]);
  put_u64(exit + 12, c->total[1]);
  out_frame(&c->out, MSG_EXIT, exit, sizeof exit);
  c->finished = true;
}

/*
 * Moves a call along as far as it can go without blocking: sends what is queued, then produces the
 * next frame. Returns whether it could go on at once (a regular file to read, a directory to list),
 * so that the loop polls without waiting.
 */
static bool advance(struct call *c, uint64_t now, const struct pollfd *fds) {
  if (c->sock >= 0 && c->out.length > 0 && flush_out(c->sock, &c->out) < 0) lose_connection(c, now);
  if (c->out.length > 0) return false;
  if (c->finished) {
    /* Everything is sent. Closing now could reset the connection under frames the emulator has not
     * read yet (a write it is still sending): half-close, and end the call at its end-of-file. */
    if (c->sock < 0) end_call(c);
    else if (!c->half_closed) shutdown(c->sock, SHUT_WR);
    c->half_closed = true;
    return false;
  }
  if (c->link == LINK_DETACHING) {
    detach(c, now);
    return false;
  }
  if (c->link != LINK_ATTACHED && c->link != LINK_ORPHANED) return false;
  if (c->kind == CALL_EXEC) {
    /* Only pipes poll found ready are read, so an idle command costs nothing. */
    for (int which = 0; which < 2; which++) {
      int k = c->slot[1 + which];
      if (k >= 0 && !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) c->slot[1 + which] = -1;
    }
    exec_advance(c, now);
    return false;
  }
  if (c->link == LINK_ORPHANED) {
    end_call(c); /* a read, listing or write nobody waits for any more */
    return false;
  }
  if (c->kind == CALL_READ) return file_read_produce(c);
  if (c->kind == CALL_LIST) return list_produce(c);
  return false; /* a write moves as its body arrives */
}

static void setup(const char *socket_path) {
  if (strlen(socket_path) >= sizeof address.sun_path) {
    warnx_("socket path too long: %s", socket_path);
    exit(2);
  }
  address.sun_family = AF_UNIX;
  strcpy(address.sun_path, socket_path);
  /* Descriptors 0-2 must be taken, or a pipe could land there and be clobbered by a command's dup2. */
  for (int fd = open("/dev/null", O_RDWR); fd >= 0 && fd <= 2; fd = open("/dev/null", O_RDWR)) {
  }
  if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe");
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
  sigaction(SIGCHLD, &sa, NULL);
}

/* Frees ended calls, keeping the others in order. */
static void compact(void) {
  int kept = 0;
  for (int i = 0; i < ncalls; i++) {
    if (calls[i]->dead) free(calls[i]);
    else calls[kept++] = calls[i];
  }
  ncalls = kept;
}

int serve(const char *socket_path) {
  setup(socket_path);
  static struct pollfd fds[2 + 3 * MAX_CALLS];
  uint64_t planned_wake = 0;
  for (;;) {
    uint64_t now = now_ms();
    if (failing && planned_wake && now > planned_wake + OVERSLEPT_MS) {
      failing_since = now;
      next_dial = now;
    }
    reap();
    dial_if_due(now);
    bool again = false;
    for (int i = 0; i < ncalls; i++)
      if (!calls[i]->dead) again |= advance(calls[i], now, fds);
    compact();

    int n = 0;
    fds[n++] = (struct pollfd){.fd = sigchld_pipe[0], .events = POLLIN};
    int spare_slot = -1;
    if (spare >= 0) {
      spare_slot = n;
      fds[n++] = (struct pollfd){.fd = spare, .events = POLLIN};
    }
    int timeout = -1;
    bool dialling = spare < 0;
    for (int i = 0; i < ncalls; i++) {
      struct call *c = calls[i];
      c->slot[0] = c->slot[1] = c->slot[2] = -1;
      if (c->sock >= 0) {
        c->slot[0] = n;
        fds[n++] = (struct pollfd){.fd = c->sock, .events = POLLIN | (c->out.length ? POLLOUT : 0)};
      }
      bool producing = c->out.length == 0 && (c->link == LINK_ATTACHED || c->link == LINK_ORPHANED);
      for (int which = 0; which < 2 && c->kind == CALL_EXEC && producing; which++) {
        if (c->pipe_fd[which] < 0) continue;
        c->slot[1 + which] = n;
        fds[n++] = (struct pollfd){.fd = c->pipe_fd[which], .events = POLLIN};
      }
      dialling |= c->link == LINK_DETACHED;
      if (c->kind == CALL_EXEC && c->exited && producing) {
        uint64_t deadline = exec_deadline(c);
        int wait = deadline > now ? (int)(deadline - now) : 0;
        if (timeout < 0 || wait < timeout) timeout = wait;
      }
    }
    if (dialling) {
      int wait = next_dial > now ? (int)(next_dial - now) : 0;
      if (timeout < 0 || wait < timeout) timeout = wait;
    }
    if (again) timeout = 0;
    planned_wake = timeout >= 0 ? now + (uint64_t)timeout : 0;
    if (poll(fds, n, timeout) < 0 && errno != EINTR) die("poll");
    now = now_ms();

    if (spare_slot >= 0 && fds[spare_slot].revents) {
      int r = read_frame(spare, &spare_in);
      if (r == 1 && spare_in.header[0] != CTL_DETACH) {
        start_call(&spare_in, now);
      } else if (r != 0) {
        /* DETACH, or the emulator closed it: dial again (it stops listening during a checkpoint). */
        close(spare);
        spare = -1;
        next_dial = now + FAST_RETRY_MS;
      }
      if (r != 0) frame_reset(&spare_in);
    }
    for (int i = 0; i < ncalls; i++) {
      struct call *c = calls[i];
      int k = c->slot[0];
      if (k >= 0 && (fds[k].revents & (POLLIN | POLLHUP | POLLERR))) read_frames(c);
    }
  }
}
