/* The DNS bench's two clients, in C so that the client's own cost is not what is measured.
 *
 * dns_load qps IP PORT QUERIES SECONDS INFLIGHT BURSTS
 *   UDP queries from one socket, INFLIGHT outstanding, each answer sending the next; the
 *   queries are QUERIES's wire messages (each a 2-byte big-endian length, then the message),
 *   in turn, each with a fresh ID. Prints answers per second of the best of BURSTS runs of
 *   SECONDS, and the answers of all of them. A window that sees no answer for 200 ms is refilled (lost or dropped queries).
 *
 * dns_load gai THREADS
 *   getaddrinfo(name, AF_UNSPEC) for each name on stdin, THREADS at a time, as an
 *   application would (glibc's stub, /etc/resolv.conf): prints "ok|fail milliseconds name"
 *   per name, in input order.
 *
 * dns_load race IP PORT TRIALS
 *   kubernetes#56903's pattern at its worst: per trial a fresh UDP socket (a new flow), two
 *   threads on two CPUs released together each send one datagram on it (glibc's A and
 *   AAAA), so both packets of the flow's first exchange meet conntrack at once. Prints
 *   "TRIALS answers-received trials-missing-an-answer". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

struct query { unsigned char wire[512]; int len; };

static int load_queries(const char *path, struct query **out) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return -1; }
    int n = 0, cap = 64;
    struct query *q = malloc(cap * sizeof *q);
    unsigned char hdr[2];
    while (fread(hdr, 1, 2, f) == 2) {
        if (n == cap) q = realloc(q, (cap *= 2) * sizeof *q);
        q[n].len = hdr[0] << 8 | hdr[1];
        if (q[n].len > 512 || fread(q[n].wire, 1, q[n].len, f) != (size_t)q[n].len) {
            fprintf(stderr, "%s: bad query %d\n", path, n);
            return -1;
        }
        n++;
    }
    fclose(f);
    *out = q;
    return n;
}

static int qps(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s qps IP PORT QUERIES SECONDS INFLIGHT BURSTS\n", argv[0]);
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) return 2;
    struct query *queries;
    int nq = load_queries(argv[4], &queries);
    if (nq <= 0) return 2;
    double seconds = atof(argv[5]);
    int inflight = atoi(argv[6]), bursts = atoi(argv[7]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&to, sizeof to) != 0) { perror("socket"); return 1; }
    unsigned short id = 0;
    int next = 0;
    unsigned char buf[4096];
    double best = 0;
    long total = 0;
    for (int b = 0; b < bursts; b++) {
        long answers = 0;
        int outstanding = 0;
        double start = now(), end = start + seconds;
        while (now() < end) {
            while (outstanding < inflight) {
                struct query *q = &queries[next++ % nq];
                id++;
                q->wire[0] = id >> 8;
                q->wire[1] = id & 0xff;
                if (send(s, q->wire, q->len, 0) < 0) { perror("send"); return 1; }
                outstanding++;
            }
            struct pollfd p = {.fd = s, .events = POLLIN};
            if (poll(&p, 1, 200) <= 0) { outstanding = 0; continue; }
            while (recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) {
                answers++;
                if (outstanding > 0) outstanding--;
            }
        }
        double rate = answers / (now() - start);
        if (rate > best) best = rate;
        total += answers;
        /* drain what is still in flight before the next burst */
        struct pollfd p = {.fd = s, .events = POLLIN};
        while (poll(&p, 1, 100) > 0) recv(s, buf, sizeof buf, 0);
    }
    printf("%.0f %ld\n", best, total);
    return 0;
}

struct lookup { char name[256]; int ok; double ms; };
static struct lookup *lookups;
static int nlookups, taken;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *resolve(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&lock);
        int i = taken < nlookups ? taken++ : -1;
        pthread_mutex_unlock(&lock);
        if (i < 0) return NULL;
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
        double start = now();
        int rc = getaddrinfo(lookups[i].name, NULL, &hints, &res);
        lookups[i].ms = (now() - start) * 1000;
        lookups[i].ok = rc == 0;
        if (rc == 0) freeaddrinfo(res);
    }
}

static int gai(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s gai THREADS < names\n", argv[0]); return 2; }
    int threads = atoi(argv[2]), cap = 1024;
    lookups = malloc(cap * sizeof *lookups);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        if (nlookups == cap) lookups = realloc(lookups, (cap *= 2) * sizeof *lookups);
        snprintf(lookups[nlookups++].name, sizeof lookups->name, "%s", line);
    }
    pthread_t t[256];
    if (threads > 256) threads = 256;
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, resolve, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < nlookups; i++)
        printf("%s %.1f %s\n", lookups[i].ok ? "ok" : "fail", lookups[i].ms, lookups[i].name);
    return 0;
}

struct racer { int sock, cpu; volatile int *go; };

static void *race_send(void *arg) {
    struct racer *r = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(r->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    while (!*r->go) {}
    send(r->sock, r->cpu ? "AAAA" : "A", r->cpu ? 4 : 1, 0);
    return NULL;
}

static int race(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s race IP PORT TRIALS\n", argv[0]); return 2; }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) return 2;
    int trials = atoi(argv[4]), answers = 0, missing = 0;
    char buf[512];
    for (int t = 0; t < trials; t++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&to, sizeof to) != 0) { perror("socket"); return 1; }
        volatile int go = 0;
        struct racer r[2] = {{s, 0, &go}, {s, 1, &go}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, race_send, &r[i]);
        go = 1;
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        int got = 0;
        struct pollfd p = {.fd = s, .events = POLLIN};
        while (got < 2 && poll(&p, 1, 1000) > 0 && recv(s, buf, sizeof buf, 0) > 0) got++;
        answers += got;
        missing += got < 2;
        close(s);
    }
    printf("%d %d %d\n", trials, answers, missing);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "race")) return race(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "qps")) return qps(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "gai")) return gai(argc, argv);
    fprintf(stderr, "usage: %s qps|gai|race ...\n", argv[0]);
    return 2;
}
