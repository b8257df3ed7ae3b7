/* tests/fuzz/replay.c: the plain-C regression driver for the libFuzzer targets.
 *
 * Goal: every fuzz target runs in the default (gcc, ASan+UBSan) test suite without libFuzzer.
 * Method: link one target's LLVMFuzzerTestOneInput with this main; replay every file of the
 * corpus directories given on the command line (a missing directory is skipped), then run a
 * short seeded mutation loop over those seeds (bit flips, byte overwrites, truncation,
 * duplication and splicing of chunks; TQ_FUZZ_ITERATIONS, default 2000) through the same entry
 * point. A crash, an ASan/UBSan report or a failed assertion fails the test; TQ_SEED
 * reproduces the mutations.
 */
#include "tq_test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEEDS_MAX       4096
#define INPUT_BYTES_MAX (256u * 1024)

static uint8_t *seeds[SEEDS_MAX];
static size_t seed_len[SEEDS_MAX];
static size_t seed_count;

static void load_file(const char *path) {
    if (seed_count == SEEDS_MAX) return;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return;
    uint8_t *buf = malloc(INPUT_BYTES_MAX);
    TQ_CHECK(buf != NULL);
    size_t n = fread(buf, 1, INPUT_BYTES_MAX, fp);
    fclose(fp);
    seeds[seed_count] = buf;
    seed_len[seed_count++] = n;
}

static void load_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        printf("replay: %s missing, skipped\n", dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) load_file(path);
    }
    closedir(d);
}

static size_t mutate(uint64_t *rng, uint8_t *buf, size_t len, size_t cap) {
    unsigned ops = 1 + (unsigned)tq_test_rand_below(rng, 4);
    for (unsigned k = 0; k < ops; k++) {
        switch (tq_test_rand_below(rng, 6)) {
        case 0: /* flip a bit */
            if (len > 0)
                buf[tq_test_rand_below(rng, len)] ^= (uint8_t)(1u << tq_test_rand_below(rng, 8));
            break;
        case 1: /* overwrite a byte with an interesting value */
            if (len > 0) {
                static const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0x08, 0x10, 0x12};
                buf[tq_test_rand_below(rng, len)] = vals[tq_test_rand_below(rng, sizeof(vals))];
            }
            break;
        case 2: /* truncate */
            if (len > 0) len = (size_t)tq_test_rand_below(rng, len);
            break;
        case 3: { /* duplicate a chunk at the end */
            if (len == 0) break;
            size_t from = (size_t)tq_test_rand_below(rng, len);
            size_t n = 1 + (size_t)tq_test_rand_below(rng, len - from);
            if (len + n > cap) break;
            memmove(buf + len, buf + from, n);
            len += n;
            break;
        }
        case 4: { /* splice in part of another seed */
            if (seed_count == 0) break;
            size_t s = (size_t)tq_test_rand_below(rng, seed_count);
            if (seed_len[s] == 0) break;
            size_t from = (size_t)tq_test_rand_below(rng, seed_len[s]);
            size_t n = seed_len[s] - from;
            if (len + n > cap) break;
            memcpy(buf + len, seeds[s] + from, n);
            len += n;
            break;
        }
        default: /* random bytes */
            if (len < cap) buf[len++] = (uint8_t)tq_test_rand(rng);
            break;
        }
    }
    return len;
}

int main(int argc, char **argv) {
    uint64_t rng = tq_test_seed("fuzz replay");
    for (int i = 1; i < argc; i++)
        load_dir(argv[i]);
    printf("replay: %zu corpus inputs\n", seed_count);
    for (size_t i = 0; i < seed_count; i++)
        LLVMFuzzerTestOneInput(seeds[i], seed_len[i]);
    const char *env = getenv("TQ_FUZZ_ITERATIONS");
    long iterations = env != NULL ? atol(env) : 2000;
    uint8_t *buf = malloc(INPUT_BYTES_MAX);
    TQ_CHECK(buf != NULL);
    for (long it = 0; it < iterations; it++) {
        size_t len = 0;
        if (seed_count > 0) {
            size_t s = (size_t)tq_test_rand_below(&rng, seed_count);
            len = seed_len[s];
            memcpy(buf, seeds[s], len);
        }
        len = mutate(&rng, buf, len, INPUT_BYTES_MAX);
        LLVMFuzzerTestOneInput(buf, len);
    }
    free(buf);
    for (size_t i = 0; i < seed_count; i++)
        free(seeds[i]);
    printf("replay: ok (%ld mutated inputs)\n", iterations);
    return 0;
}
