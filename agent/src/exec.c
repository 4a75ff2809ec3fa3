/*
 * Commands: `/bin/sh -c COMMAND` in a session of its own, stdin from /dev/null, stdout and stderr on
 * pipes read by the loop. Like the emulator's docker exec path, the command's environment carries a
 * marker (ISORUN_EXEC_ID) that every descendant inherits, so a timeout can find and kill all of them,
 * even those that left the session or were re-parented to PID 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

extern char **environ;

/* After the shell exits, output from processes it left behind is still collected for this long (as
 * Docker does for an exec whose pipes outlive it). */
#define DRAIN_AFTER_EXIT_MS 2000

static const char MARKER_VAR[] = "ISORUN_EXEC_ID=";

/* The agent's own environment (the sandbox's), without any marker of its own, plus this call's. */
static char **command_env(const char *marker) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof *env);
  char *mine = malloc(sizeof MARKER_VAR + strlen(marker));
  if (!env || !mine) die("malloc");
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], MARKER_VAR, sizeof MARKER_VAR - 1) != 0) env[k++] = environ[i];
  strcpy(mine, MARKER_VAR);
  strcat(mine, marker);
  env[k++] = mine;
  env[k] = NULL;
  return env;
}

static void child(const char *command, char **env, int out, int err) {
  setsid();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  int in = open("/dev/null", O_RDONLY);
  if (in < 0) {
    /* No /dev/null in this image: an empty pipe reads as end-of-file just the same. */
    int p[2];
    if (pipe(p) == 0) {
      close(p[1]);
      in = p[0];
    }
  }
  if (in >= 0 && in != 0) dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  char *argv[] = {"/bin/sh", "-c", (char *)command, NULL};
  execve("/bin/sh", argv, env);
  dprintf(2, "isorun-agent: cannot run /bin/sh: %s\n", strerror(errno));
  _exit(127);
}

int exec_start(struct call *c, const char *command) {
  for (int i = 0; i < 8; i++) sprintf(c->marker + 2 * i, "%02x", c->id[i]);
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0) return -1;
  if (pipe2(err, O_CLOEXEC) < 0) {
    close(out[0]);
    close(out[1]);
    return -1;
  }
  char **env = command_env(c->marker);
  pid_t pid = fork();
  if (pid == 0) child(command, env, out[1], err[1]);
  /* The parent's copy: only the marker entry was allocated here (the others are environ's). */
  for (size_t i = 0; env[i]; i++)
    if (strncmp(env[i], MARKER_VAR, sizeof MARKER_VAR - 1) == 0) free(env[i]);
  free(env);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(out[0]);
    close(err[0]);
    return -1;
  }
  set_nonblocking(out[0]);
  set_nonblocking(err[0]);
  c->pid = pid;
  c->pipe_fd[0] = out[0];
  c->pipe_fd[1] = err[0];
  return 0;
}

/* Whether /proc/PID/environ holds this call's marker. */
static bool carries_marker(const char *pid, const char *wanted, size_t wanted_len) {
  char path[300]; /* a directory name is at most 255 bytes */
  snprintf(path, sizeof path, "/proc/%s/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  /* Environments are small; a process with a huge one is read in part, as far as this buffer goes. */
  static char buf[256 * 1024];
  size_t got = 0;
  ssize_t n;
  while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += n;
  close(fd);
  for (size_t at = 0; at < got;) {
    size_t len = strnlen(buf + at, got - at);
    if (len == wanted_len && memcmp(buf + at, wanted, len) == 0) return true;
    at += len + 1;
  }
  return false;
}

void exec_kill_tree(struct call *c) {
  char wanted[sizeof MARKER_VAR + sizeof c->marker];
  snprintf(wanted, sizeof wanted, "%s%s", MARKER_VAR, c->marker);
  size_t wanted_len = strlen(wanted);
  if (c->pid > 0 && !c->exited) kill(-c->pid, SIGKILL);
  /* Twice: a process forking while the first round runs is caught by the second. */
  for (int round = 0; round < 2; round++) {
    DIR *proc = opendir("/proc");
    if (!proc) return;
    struct dirent *e;
    while ((e = readdir(proc))) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      if (carries_marker(e->d_name, wanted, wanted_len)) kill(atoi(e->d_name), SIGKILL);
    }
    closedir(proc);
  }
}

void exec_reaped(struct call *c, int status) {
  c->exited = true;
  c->exited_at_ms = now_ms();
  c->exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/*
 * Reads one chunk of stream `which` (0 stdout, 1 stderr) into the call's output frame, keeping at most
 * `limit` bytes of each stream and counting the rest. Returns false once the stream is at its end.
 */
bool exec_produce(struct call *c, int which) {
  uint8_t *buf = out_begin(&c->out, which == 0 ? MSG_STDOUT : MSG_STDERR);
  ssize_t n = read(c->pipe_fd[which], buf, CHUNK);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  if (n == 0) {
    close(c->pipe_fd[which]);
    c->pipe_fd[which] = -1;
    return false;
  }
  c->total[which] += n;
  uint64_t room = c->limit > c->kept[which] ? c->limit - c->kept[which] : 0;
  size_t keep = (uint64_t)n < room ? (size_t)n : (size_t)room;
  if (keep > 0) {
    c->kept[which] += keep;
    out_commit(&c->out, keep);
  }
  return true;
}

bool exec_done(const struct call *c, uint64_t now) {
  if (!c->exited) return false;
  bool drained = c->pipe_fd[0] < 0 && c->pipe_fd[1] < 0;
  return drained || now >= c->exited_at_ms + DRAIN_AFTER_EXIT_MS;
}

uint64_t exec_deadline(const struct call *c) {
  return c->exited ? c->exited_at_ms + DRAIN_AFTER_EXIT_MS : UINT64_MAX;
}

void exec_release(struct call *c) {
  for (int i = 0; i < 2; i++) {
    if (c->pipe_fd[i] >= 0) close(c->pipe_fd[i]);
    c->pipe_fd[i] = -1;
  }
}
