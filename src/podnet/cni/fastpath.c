/*
 * podnet-cni fast path: a byte relay to the agent, nothing more.
 *
 * A CNI plugin is exec'd for every container, and a Python interpreter takes
 * longer to start than the reference Go plugins take to do all their work.
 * This forwarder is what `podnet cni install` places as `podnet-cni` when a C
 * compiler was available at install time. It holds no CNI logic at all:
 *
 *   1. read stdin (the network configuration) and the CNI_* variables;
 *   2. connect to the agent's unix socket (RUNDIR/agent.sock, RUNDIR from the
 *      configuration's "runDir", else PODNET_RUN_DIR, else /run/podnet);
 *   3. POST /v1/cni/raw with the body  K=V\0 ... \0\0 <stdin>;
 *   4. print the reply body, exit with the status in its Cni-Exit header.
 *
 * When no agent answers, it execs the Python plugin (PODNET_CNI_PY, fixed at
 * build time) with the same arguments, environment and stdin, which does the
 * work itself: the same code the agent runs, so both paths give one result.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef PODNET_CNI_PY
#error "build with -DPODNET_CNI_PY='\"/path/to/python/podnet-cni\"'"
#endif

extern char **environ;

struct buf {
    char *data;
    size_t len, cap;
};

static void die(const char *msg) {
    /* The runtime reads the spec's error JSON from stdout. */
    printf("{\"cniVersion\": \"1.1.0\", \"code\": 11, \"msg\": \"podnet-cni: %s\"}\n", msg);
    exit(1);
}

static void put(struct buf *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8192;
        while (cap < b->len + len) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) die("out of memory");
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void slurp(int fd, struct buf *b) {
    char chunk[16384];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n > 0) put(b, chunk, (size_t)n);
        else if (n == 0) return;
        else if (errno != EINTR) die("cannot read");
    }
}

/* "runDir": "VALUE" in the configuration; plain strings only (else the default). */
static int run_dir(const struct buf *conf, char *out, size_t size) {
    static const char key[] = "\"runDir\"";
    const char *end = conf->data + conf->len;
    const char *p = memmem(conf->data, conf->len, key, sizeof key - 1);
    if (!p) return 0;
    p += sizeof key - 1;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p++ != ':') return 0;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p++ != '"') return 0;
    size_t n = 0;
    while (p < end && *p != '"') {
        if (*p == '\\' || n + 1 >= size) return 0;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return p < end && n > 0;
}

static void standalone(const struct buf *conf, char **argv) {
    int fd = memfd_create("podnet-cni-stdin", 0);
    if (fd < 0) die("memfd_create failed");
    for (size_t off = 0; off < conf->len;) {
        ssize_t n = write(fd, conf->data + off, conf->len - off);
        if (n < 0 && errno != EINTR) die("cannot buffer stdin");
        if (n > 0) off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0) die("cannot hand over stdin");
    close(fd);
    argv[0] = (char *)PODNET_CNI_PY;
    execv(PODNET_CNI_PY, argv);
    die("cannot run the Python plugin " PODNET_CNI_PY);
}

static int connect_agent(const struct buf *conf) {
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path) - 16];
    const char *env = getenv("PODNET_RUN_DIR");
    if (!run_dir(conf, dir, sizeof dir)) {
        snprintf(dir, sizeof dir, "%s", env && *env ? env : "/run/podnet");
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/agent.sock", dir);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(s);
        return -1;
    }
    return s;
}

static void send_all(int s, const char *data, size_t len) {
    while (len) {
        ssize_t n = write(s, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("the agent closed the connection");
        data += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv) {
    (void)argc;
    struct buf conf = {0}, body = {0}, reply = {0};
    slurp(0, &conf);
    int s = connect_agent(&conf);
    if (s < 0) standalone(&conf, argv);

    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "CNI_", 4) == 0) put(&body, *e, strlen(*e) + 1);
    }
    put(&body, "", 1);
    if (conf.len) put(&body, conf.data, conf.len);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /v1/cni/raw HTTP/1.1\r\nHost: podnet\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     body.len);
    send_all(s, head, (size_t)n);
    send_all(s, body.data, body.len);
    slurp(s, &reply);
    close(s);

    put(&reply, "", 1); /* NUL-terminate for the header search */
    const char *sep = strstr(reply.data, "\r\n\r\n");
    const char *exit_hdr = strstr(reply.data, "\r\nCni-Exit: ");
    if (strncmp(reply.data, "HTTP/1.", 7) != 0 || !sep || !exit_hdr || exit_hdr > sep) {
        die("the agent gave no answer; see the agent's log");
    }
    int code = atoi(exit_hdr + 12);
    const char *out = sep + 4;
    size_t out_len = reply.len - 1 - (size_t)(out - reply.data);
    if (out_len) {
        fwrite(out, 1, out_len, stdout);
        fputc('\n', stdout);
    }
    return code;
}
