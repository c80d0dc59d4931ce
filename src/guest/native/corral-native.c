// The guest agent's few system calls that Node.js does not offer. Each one used to be a process spawned from
// the agent (`hostname`, `date`, `ip link`), and forking the agent costs tens of milliseconds under emulation;
// reseeding the kernel's random generator had no command at all. Built by the image builder with the host's
// C compiler against Node-API, so it loads in the guest's node (the host's own binary).
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static napi_value fail(napi_env env, const char *what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static int string_arg(napi_env env, napi_value value, char *out, size_t size) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, out, size, &length) != napi_ok || length >= size - 1) return -1;
  return 0;
}

// setHostname(name: string): sethostname(2).
static napi_value set_hostname(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[65];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || string_arg(env, argv[0], name, sizeof name) != 0) {
    napi_throw_type_error(env, NULL, "setHostname(name): a name of at most 63 bytes");
    return NULL;
  }
  if (sethostname(name, strlen(name)) != 0) return fail(env, "sethostname");
  return NULL;
}

// setTime(ms: number): the real-time clock to the millisecond (busybox `date -s` only takes seconds).
static napi_value set_time(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t ms = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int64(env, argv[0], &ms) != napi_ok || ms <= 0) {
    napi_throw_type_error(env, NULL, "setTime(ms): milliseconds since the epoch");
    return NULL;
  }
  struct timespec now = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  if (clock_settime(CLOCK_REALTIME, &now) != 0) return fail(env, "clock_settime");
  return NULL;
}

// reseedRandom(seed: Buffer): mixes host-supplied bytes into the kernel's pool, credits them, and forces the
// generator to rekey now. A clone restored from a snapshot carries its template's generator state: without
// the forced reseed every clone would hand out the same "random" bytes until the kernel rekeys by itself.
static napi_value reseed_random(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  size_t length = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &length) != napi_ok || length == 0 || length > 512) {
    napi_throw_type_error(env, NULL, "reseedRandom(seed): a Buffer of 1 to 512 bytes");
    return NULL;
  }
  struct rand_pool_info *pool = calloc(1, sizeof *pool + length);
  if (pool == NULL) return fail(env, "calloc");
  pool->entropy_count = (int)(length * 8);
  pool->buf_size = (int)length;
  memcpy(pool->buf, data, length);
  int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    free(pool);
    return fail(env, "open /dev/urandom");
  }
  int added = ioctl(fd, RNDADDENTROPY, pool);
  free(pool);
  if (added != 0 || ioctl(fd, RNDRESEEDCRNG) != 0) {
    napi_value error = fail(env, added != 0 ? "RNDADDENTROPY" : "RNDRESEEDCRNG");
    close(fd);
    return error;
  }
  close(fd);
  return NULL;
}

// setMacAddress(interface: string, mac: Buffer of 6): the link's hardware address (virtio-net changes it live).
static napi_value set_mac_address(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct ifreq request;
  void *mac = NULL;
  size_t length = 0;
  memset(&request, 0, sizeof request);
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || string_arg(env, argv[0], request.ifr_name, IFNAMSIZ) != 0 || napi_get_buffer_info(env, argv[1], &mac, &length) != napi_ok || length != 6) {
    napi_throw_type_error(env, NULL, "setMacAddress(interface, mac): a name and a Buffer of 6 bytes");
    return NULL;
  }
  request.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  memcpy(request.ifr_hwaddr.sa_data, mac, 6);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket");
  if (ioctl(fd, SIOCSIFHWADDR, &request) != 0) {
    napi_value error = fail(env, "SIOCSIFHWADDR");
    close(fd);
    return error;
  }
  close(fd);
  return NULL;
}

NAPI_MODULE_INIT() {
  const struct {
    const char *name;
    napi_callback call;
  } functions[] = {
      {"setHostname", set_hostname},
      {"setTime", set_time},
      {"reseedRandom", reseed_random},
      {"setMacAddress", set_mac_address},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].call, NULL, &fn);
    napi_set_named_property(env, exports, functions[i].name, fn);
  }
  return exports;
}
