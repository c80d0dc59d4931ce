// The guest agent's few system calls that Node.js does not offer. Each one used to be a process spawned from
// the agent (`hostname`, `date`, `ip link`, `ip addr`, `ip route`), and forking the agent costs tens of
// milliseconds under emulation;
// reseeding the kernel's random generator had no command at all. Built by the image builder with the host's
// C compiler against Node-API, so it loads in the guest's node (the host's own binary).
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/random.h>
#include <linux/rtnetlink.h>
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
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].call, NULL, &fn);
    napi_set_named_property(env, exports, functions[i].name, fn);
  }
  return exports;
}
