/* New TCP connections, one after another, to ip:port: connect, then close with a reset
 * (SO_LINGER 0) so no TIME_WAIT piles up. Prints connections per second of the best of
 * `bursts` runs of `count`, after `warmup` untimed ones. A C loop, so that the kernel's
 * cost per connection (the datapath under test) is what is measured, not a client's. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int once(const struct sockaddr_in *to) {
    struct linger reset = {1, 0};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    int ok = connect(s, (const struct sockaddr *)to, sizeof *to);
    close(s);
    return ok;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s IP PORT COUNT BURSTS WARMUP\n", argv[0]);
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) return 2;
    int count = atoi(argv[3]), bursts = atoi(argv[4]), warmup = atoi(argv[5]);
    for (int i = 0; i < warmup; i++)
        if (once(&to) != 0) { perror("connect"); return 1; }
    double best = 0;
    for (int b = 0; b < bursts; b++) {
        double start = now();
        for (int i = 0; i < count; i++)
            if (once(&to) != 0) { perror("connect"); return 1; }
        double rate = count / (now() - start);
        if (rate > best) best = rate;
    }
    printf("%.0f\n", best);
    return 0;
}
