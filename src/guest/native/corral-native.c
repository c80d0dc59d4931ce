// The guest agent's few system calls that Node.js does not offer. Each one used to be a process spawned from
// the agent (`hostname`, `date`, `ip link`, `ip addr`, `ip route`), and forking the agent costs tens of
// milliseconds under emulation; reseeding the kernel's random generator had no command at all. And the
// virtio-serial port relay, threads that do the port's blocking reads and writes (see below). Built by the
// image builder with the host's C compiler against Node-API, so it loads in the guest's node (the host's own
// binary).
#define _GNU_SOURCE // pipe2, F_SETPIPE_SZ
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/random.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
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

// ---- setIpv4: the address, link and default route that `ip addr`/`ip link`/`ip route` used to set ----

#define MAX_ADDRESSES 32

struct netlink_message {
  struct nlmsghdr header;
  union {
    struct ifaddrmsg address;
    struct rtmsg route;
  } body;
  char attributes[64];
};

static void add_attribute(struct nlmsghdr *header, unsigned short type, const void *data, unsigned short length) {
  struct rtattr *attribute = (struct rtattr *)((char *)header + NLMSG_ALIGN(header->nlmsg_len));
  attribute->rta_type = type;
  attribute->rta_len = RTA_LENGTH(length);
  memcpy(RTA_DATA(attribute), data, length);
  header->nlmsg_len = NLMSG_ALIGN(header->nlmsg_len) + RTA_ALIGN(attribute->rta_len);
}

// Sends one request and reads the kernel's answers to it. A dump's addresses of `index` go to `found` (when
// not NULL). Returns 0 or -errno (the kernel's acknowledgement, or the socket's own failure).
static int netlink_call(int fd, struct nlmsghdr *request, int index, uint32_t *found, unsigned char *prefixes, int *count) {
  static uint32_t sequence;
  request->nlmsg_seq = ++sequence;
  request->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  if (send(fd, request, request->nlmsg_len, 0) < 0) return -errno;
  char buffer[16384];
  for (;;) {
    ssize_t received = recv(fd, buffer, sizeof buffer, 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    int length = (int)received;
    for (struct nlmsghdr *answer = (struct nlmsghdr *)buffer; NLMSG_OK(answer, length); answer = NLMSG_NEXT(answer, length)) {
      if (answer->nlmsg_seq != request->nlmsg_seq) continue;
      if (answer->nlmsg_type == NLMSG_DONE) return 0;
      if (answer->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(answer))->error;
      if (answer->nlmsg_type != RTM_NEWADDR || found == NULL) continue;
      struct ifaddrmsg *address = NLMSG_DATA(answer);
      if ((int)address->ifa_index != index || *count >= MAX_ADDRESSES) continue;
      int attributes_length = (int)IFA_PAYLOAD(answer);
      for (struct rtattr *attribute = IFA_RTA(address); RTA_OK(attribute, attributes_length); attribute = RTA_NEXT(attribute, attributes_length)) {
        if (attribute->rta_type != IFA_LOCAL) continue;
        memcpy(&found[*count], RTA_DATA(attribute), 4);
        prefixes[*count] = address->ifa_prefixlen;
        *count += 1;
      }
    }
  }
}

static void address_request(struct netlink_message *message, unsigned short type, unsigned short flags, int index, unsigned char prefix, const void *address) {
  memset(message, 0, sizeof *message);
  message->header.nlmsg_len = NLMSG_LENGTH(sizeof message->body.address);
  message->header.nlmsg_type = type;
  message->header.nlmsg_flags = flags;
  message->body.address.ifa_family = AF_INET;
  message->body.address.ifa_prefixlen = prefix;
  message->body.address.ifa_index = (unsigned int)index;
  if (address != NULL) {
    add_attribute(&message->header, IFA_LOCAL, address, 4);
    add_attribute(&message->header, IFA_ADDRESS, address, 4);
  }
}

static napi_value fail_with(napi_env env, const char *what, int error) {
  errno = error;
  return fail(env, what);
}

// setIpv4(interface: string, address: Buffer of 4, prefixLength: number, gateway: Buffer of 4 | null): what
// `ip addr flush` + `ip addr add A/P`, `ip link set up` and `ip route replace default via G` did, through
// rtnetlink. An interface that already holds exactly that one address keeps it (and its connections).
static napi_value set_ipv4(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char name[IFNAMSIZ];
  void *address = NULL, *gateway = NULL;
  size_t address_length = 0, gateway_length = 0;
  uint32_t prefix = 0;
  napi_valuetype gateway_type = napi_null;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc == 4) napi_typeof(env, argv[3], &gateway_type);
  if (argc < 4 || string_arg(env, argv[0], name, sizeof name) != 0 || napi_get_buffer_info(env, argv[1], &address, &address_length) != napi_ok ||
      address_length != 4 || napi_get_value_uint32(env, argv[2], &prefix) != napi_ok || prefix < 1 || prefix > 32 ||
      (gateway_type != napi_null && (napi_get_buffer_info(env, argv[3], &gateway, &gateway_length) != napi_ok || gateway_length != 4))) {
    napi_throw_type_error(env, NULL, "setIpv4(interface, address, prefixLength, gateway): a name, a Buffer of 4, 1 to 32, and a Buffer of 4 or null");
    return NULL;
  }
  int index = (int)if_nametoindex(name);
  if (index == 0) return fail(env, name);
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return fail(env, "socket(AF_NETLINK)");
  struct netlink_message message;
  uint32_t current[MAX_ADDRESSES];
  unsigned char prefixes[MAX_ADDRESSES];
  int count = 0;
  address_request(&message, RTM_GETADDR, NLM_F_DUMP, 0, 0, NULL);
  int error = netlink_call(fd, &message.header, index, current, prefixes, &count);
  if (error != 0) goto failed_list;
  if (!(count == 1 && prefixes[0] == prefix && memcmp(&current[0], address, 4) == 0)) {
    for (int i = 0; i < count; i++) {
      address_request(&message, RTM_DELADDR, 0, index, prefixes[i], &current[i]);
      error = netlink_call(fd, &message.header, index, NULL, NULL, NULL);
      if (error != 0 && error != -EADDRNOTAVAIL) goto failed_delete;
    }
    address_request(&message, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, (unsigned char)prefix, address);
    error = netlink_call(fd, &message.header, index, NULL, NULL, NULL);
    if (error != 0) goto failed_add;
  }
  close(fd);

  struct ifreq request;
  memset(&request, 0, sizeof request);
  memcpy(request.ifr_name, name, sizeof request.ifr_name);
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket");
  if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) goto failed_flags;
  request.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) goto failed_flags;
  close(fd);

  if (gateway == NULL) return NULL;
  fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return fail(env, "socket(AF_NETLINK)");
  memset(&message, 0, sizeof message);
  message.header.nlmsg_len = NLMSG_LENGTH(sizeof message.body.route);
  message.header.nlmsg_type = RTM_NEWROUTE;
  message.header.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  message.body.route.rtm_family = AF_INET;
  message.body.route.rtm_table = RT_TABLE_MAIN;
  message.body.route.rtm_protocol = RTPROT_BOOT;
  message.body.route.rtm_scope = RT_SCOPE_UNIVERSE;
  message.body.route.rtm_type = RTN_UNICAST;
  add_attribute(&message.header, RTA_GATEWAY, gateway, 4);
  add_attribute(&message.header, RTA_OIF, &index, sizeof index);
  error = netlink_call(fd, &message.header, index, NULL, NULL, NULL);
  close(fd);
  if (error != 0) return fail_with(env, "RTM_NEWROUTE (default route)", -error);
  return NULL;

failed_list:
  close(fd);
  return fail_with(env, "RTM_GETADDR", -error);
failed_delete:
  close(fd);
  return fail_with(env, "RTM_DELADDR", -error);
failed_add:
  close(fd);
  return fail_with(env, "RTM_NEWADDR", -error);
failed_flags: {
  napi_value failure = fail(env, "SIOCSIFFLAGS (link up)");
  close(fd);
  return failure;
}
}

// The virtio-serial port relay. libuv cannot poll the port (a character device), so without this every read
// and write is a thread-pool round trip, and the guest kernel hands out at most 4 KiB per read(2): about
// 0.3 ms per 4 KiB under emulation. Two threads of our own do the blocking system calls instead and talk to
// the agent through pipes, which libuv polls natively:
// - the reader loops on read(2) and writes frames into a pipe: a little-endian int32 header, then that many
//   bytes. A header of 0 means "no host is connected" (read(2) returned 0), a negative one -errno (read(2)
//   failed); each is sent once per idle spell, in order with the data, while the thread retries with a
//   backoff (the kernel has no "host connected" event). A full pipe blocks the thread, which stops reading
//   the port: the agent's backpressure reaches the host.
// - the writer copies whatever the agent wrote into its pipe to the port, in order, up to 32 KiB per write(2)
//   (the driver's limit). A write to a port with no host blocks until the next host, as the agent's own
//   writes did; the host's handshake discards everything before READY, and READY follows in the same pipe.
// Both threads only ever block in system calls, so they survive a snapshot and restore as they are.
#define RELAY_HEADER 4
#define RELAY_CHUNK (64 * 1024)
#define RELAY_READ_MIN 4096
#define RELAY_WRITE_CHUNK (32 * 1024)
#define RELAY_PIPE_SIZE (1024 * 1024)
#define RELAY_IDLE_MIN_MS 10
#define RELAY_IDLE_MAX_MS 250

struct relay {
  int port;
  int pipe;
};

static void sleep_ms(unsigned ms) {
  struct timespec delay = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
  }
}

static int write_all(int fd, const char *data, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, data, length);
    if (written < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += written;
    length -= (size_t)written;
  }
  return 0;
}

static int send_frame(int pipe, char *frame, int32_t header, size_t length) {
  uint32_t value = (uint32_t)header;
  for (int i = 0; i < RELAY_HEADER; i++) frame[i] = (char)((value >> (8 * i)) & 0xff);
  return write_all(pipe, frame, RELAY_HEADER + length);
}

// The first word of the host's handshake line (HANDSHAKE_HELLO in src/protocol/agent.ts) and its space.
static const char HELLO_PREFIX[] = "CORRAL-HELLO ";

static int starts_hello(const char *data, size_t length) {
  return length >= sizeof HELLO_PREFIX - 1 && memcmp(data, HELLO_PREFIX, sizeof HELLO_PREFIX - 1) == 0;
}

// read(2) on the port, as a frame header: bytes read (> 0), 0 when no host is connected, -errno on failure.
static int32_t read_port(int port, char *into, size_t size) {
  for (;;) {
    ssize_t got = read(port, into, size);
    if (got >= 0) return (int32_t)got;
    if (errno != EINTR) return -errno;
  }
}

static void *relay_reads(void *arg) {
  struct relay *relay = arg;
  char *frame = malloc(RELAY_HEADER + RELAY_CHUNK);
  char status[RELAY_HEADER];
  unsigned idle_ms = RELAY_IDLE_MIN_MS;
  int idle_sent = 0;
  while (frame != NULL) {
    int32_t got = read_port(relay->port, frame + RELAY_HEADER, RELAY_CHUNK);
    if (got > 0) {
      // Gather what the port already holds (4 KiB per read(2)) into one frame: one wake-up of the agent per
      // 64 KiB rather than per 4 KiB. poll() tells whether a read would block; a read that then says "no
      // host" or fails is reported after the data it followed.
      size_t filled = (size_t)got;
      int failed = 0;
      got = 1;
      while (RELAY_CHUNK - filled >= RELAY_READ_MIN) {
        struct pollfd ready = {.fd = relay->port, .events = POLLIN};
        if (poll(&ready, 1, 0) != 1 || !(ready.revents & POLLIN)) break;
        char *next = frame + RELAY_HEADER + filled;
        got = read_port(relay->port, next, RELAY_CHUNK - filled);
        if (got <= 0) break;
        if (starts_hello(next, (size_t)got)) {
          // A host that reconnected before this thread saw it leave starts with HELLO behind the old host's
          // last bytes, at the start of a read (QEMU fills a fresh buffer per write from the host). The agent
          // looks for it at the start of a frame, so it starts one.
          if (send_frame(relay->pipe, frame, (int32_t)filled, filled) != 0) {
            failed = 1;
            break;
          }
          memmove(frame + RELAY_HEADER, next, (size_t)got);
          filled = 0;
        }
        filled += (size_t)got;
      }
      if (failed || send_frame(relay->pipe, frame, (int32_t)filled, filled) != 0) break;
      idle_ms = RELAY_IDLE_MIN_MS;
      idle_sent = 0;
      if (got > 0) continue;
    }
    if (!idle_sent) {
      if (send_frame(relay->pipe, status, got, 0) != 0) break;
      idle_sent = 1;
    }
    sleep_ms(idle_ms);
    idle_ms = idle_ms * 2 > RELAY_IDLE_MAX_MS ? RELAY_IDLE_MAX_MS : idle_ms * 2;
  }
  // The agent closed its end (or memory ran out): nothing reads the frames any more.
  free(frame);
  close(relay->pipe);
  free(relay);
  return NULL;
}

static void *relay_writes(void *arg) {
  struct relay *relay = arg;
  char *chunk = malloc(RELAY_WRITE_CHUNK);
  while (chunk != NULL) {
    ssize_t got = read(relay->pipe, chunk, RELAY_WRITE_CHUNK);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break; // the agent closed its end
    // A failed write (the port unplugged) loses the chunk, as a failed write(2) did before: the host that
    // sees the port again starts with a handshake.
    if (write_all(relay->port, chunk, (size_t)got) != 0) sleep_ms(RELAY_IDLE_MIN_MS);
  }
  free(chunk);
  close(relay->pipe);
  free(relay);
  return NULL;
}

// A pipe for one relay thread; `ours` is the end the thread keeps, the other end is returned for the agent.
static int start_relay_thread(int port, int ours, void *(*loop)(void *), int *agent_end) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) return -1;
  fcntl(ends[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE); // best effort: a smaller pipe only means more wake-ups
  struct relay *relay = malloc(sizeof *relay);
  if (relay == NULL) goto fail;
  relay->port = port;
  relay->pipe = ends[ours];
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attributes, 64 * 1024);
  // The threads take no signals: node's handlers stay on node's threads, and system calls see no EINTR.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_t thread;
  int failed = pthread_create(&thread, &attributes, loop, relay);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  pthread_attr_destroy(&attributes);
  if (failed != 0) {
    free(relay);
    errno = failed;
    goto fail;
  }
  *agent_end = ends[1 - ours];
  return 0;
fail:
  close(ends[0]);
  close(ends[1]);
  return -1;
}

// startPortRelay(fd: number): {reads, writes}: starts the two relay threads on the open port `fd`; `reads` is
// the read end of the frame pipe, `writes` the write end of the pipe whose bytes go to the port.
static napi_value start_port_relay(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t port = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &port) != napi_ok || port < 0) {
    napi_throw_type_error(env, NULL, "startPortRelay(fd): an open file descriptor");
    return NULL;
  }
  int reads = -1, writes = -1;
  if (start_relay_thread(port, 1, relay_reads, &reads) != 0) return fail(env, "start the port reader");
  if (start_relay_thread(port, 0, relay_writes, &writes) != 0) {
    // The reader thread stops at its next frame, once it finds the pipe closed.
    napi_value error = fail(env, "start the port writer");
    close(reads);
    return error;
  }
  napi_value result, value;
  napi_create_object(env, &result);
  napi_create_int32(env, reads, &value);
  napi_set_named_property(env, result, "reads", value);
  napi_create_int32(env, writes, &value);
  napi_set_named_property(env, result, "writes", value);
  return result;
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
      {"setIpv4", set_ipv4},
      {"startPortRelay", start_port_relay},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].call, NULL, &fn);
    napi_set_named_property(env, exports, functions[i].name, fn);
  }
  return exports;
}
