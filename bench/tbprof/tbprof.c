// SPDX-License-Identifier: GPL-2.0
/*
 * tbprof: a QEMU TCG plugin that counts the guest instructions executed per translation block
 * (by its start address), only while armed; each execution of the block at toggle=<hex vaddr>
 * (a system call's entry, e.g. __x64_sys_sync) flips the arming. At exit it writes out=<file>:
 * "# toggles N", then "vaddr instructions executions" per block that ran while armed.
 * scripts/profile builds and runs it (docs/performance.md, section 11). Under -icount an
 * instruction is guest time (16 ns at shift 4), and a rep-prefixed string instruction counts
 * once per iteration, as here (each iteration re-executes its block).
 *
 * The few plugin API declarations it uses are written out here (QEMU's qemu-plugin.h is not
 * packaged in Debian): stable since plugin API version 2.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct { const char *target_name; struct { int min; int cur; } version; bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; }; } qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, void (*cb)(unsigned int, void *), enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *), void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 2;

struct tbinfo { uint64_t vaddr; uint64_t n; uint64_t execs; };
#define CAP (1u << 22)
static struct tbinfo *tab[CAP];
static uint64_t toggle;
static int armed;
static uint64_t toggles;
static const char *outpath = "tbprof.out";

static void exec_cb(unsigned int vcpu, void *ud) {
    struct tbinfo *t = ud;
    (void)vcpu;
    if (t->vaddr == toggle) { armed = !armed; toggles++; }
    if (armed) t->execs++;
}
static void trans_cb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    uint64_t va = qemu_plugin_tb_vaddr(tb);
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t h = (va * 0x9E3779B97F4A7C15ull + n) >> 40;
    struct tbinfo *t;
    for (;;) {
        h &= CAP - 1;
        t = tab[h];
        if (!t) { t = calloc(1, sizeof(*t)); t->vaddr = va; t->n = n; tab[h] = t; break; }
        if (t->vaddr == va && t->n == n) break;
        h++;
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, exec_cb, QEMU_PLUGIN_CB_NO_REGS, t);
}
static void dump(struct tbinfo *t, FILE *f) {
    if (t && t->execs) fprintf(f, "%016" PRIx64 " %" PRIu64 " %" PRIu64 "\n", t->vaddr, t->n * t->execs, t->execs);
}
static void at_exit(qemu_plugin_id_t id, void *p) {
    FILE *f = fopen(outpath, "w");
    (void)id;
    (void)p;
    if (!f)
        return;
    fprintf(f, "# toggles %" PRIu64 "\n", toggles);
    for (unsigned i = 0; i < CAP; i++) dump(tab[i], f);
    fclose(f);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "toggle=", 7)) toggle = strtoull(argv[i] + 7, NULL, 16);
        else if (!strncmp(argv[i], "out=", 4)) outpath = argv[i] + 4;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, trans_cb);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
