/*
 * fdpass: the two socket calls that Node cannot make and an unprivileged FUSE mount needs.
 * fusermount (setuid root) mounts on behalf of a normal user and hands the opened /dev/fuse
 * descriptor back over the unix socket named by _FUSE_COMMFD, as SCM_RIGHTS ancillary data.
 *
 *   socketpair() -> [fdA, fdB]   an AF_UNIX stream pair, close-on-exec on both
 *   recvFd(fd)   -> number       receives one descriptor sent with SCM_RIGHTS on fd; throws
 *                                when the peer closed without sending one
 *
 * Only Node-API (version 8) is used, so one build loads on every Node release that has it.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return throw_errno(env, "socketpair", errno);
  napi_value arr, a, b;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, sv[0], &a);
  napi_create_int32(env, sv[1], &b);
  napi_set_element(env, arr, 0, a);
  napi_set_element(env, arr, 1, b);
  return arr;
}

static napi_value js_recv_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t sock = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &sock) != napi_ok || sock < 0) {
    napi_throw_type_error(env, NULL, "recvFd(socketFd) needs a descriptor number");
    return NULL;
  }
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "recvmsg", errno);
  if (n == 0) {
    napi_throw_error(env, NULL, "the peer closed the socket without sending a descriptor");
    return NULL;
  }
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
      napi_value out;
      napi_create_int32(env, fd, &out);
      return out;
    }
  }
  napi_throw_error(env, NULL, "the message carried no descriptor (SCM_RIGHTS)");
  return NULL;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value f;
  napi_create_function(env, "socketpair", NAPI_AUTO_LENGTH, js_socketpair, NULL, &f);
  napi_set_named_property(env, exports, "socketpair", f);
  napi_create_function(env, "recvFd", NAPI_AUTO_LENGTH, js_recv_fd, NULL, &f);
  napi_set_named_property(env, exports, "recvFd", f);
  return exports;
}
