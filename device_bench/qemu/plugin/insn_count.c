/*
 * edge-lowrank's QEMU TCG plugin (plugin API 1, QEMU 7.2+): counts the guest instructions executed
 * between markers, so that one inference is counted exactly.
 *
 * Why: emulated wall time is no device figure, but the number of ARM instructions an inference executes
 * is deterministic and follows the kernels XNNPACK picks for the emulated CPU.
 *
 * How: at translation time every translation block (TB) gets inline "add" ops, one per instruction class
 * present in it (total, SIMD/FP data processing, SIMD/FP loads and stores, dot product, i8mm matrix
 * multiply, SVE), so execution costs one add per class per TB and no helper call. The guest marks points of
 * interest with an otherwise-invalid syscall (number MARKER, default 0x7e1a; QEMU answers -ENOSYS): at each
 * one the plugin appends "mark <a1> <total> <simd_fp> <simd_ldst> <dot> <i8mm> <sve>" to the file given by
 * `out=PATH`. A syscall ends a TB, so the totals are exact at the markers.
 *
 * Usage: qemu-aarch64 -plugin insn_count.so,out=counts.txt[,marker=32282] ...
 * The counters are shared by all vCPUs (guest threads): run the guest with one thread for exact counts.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { C_TOTAL, C_SIMD_FP, C_SIMD_LDST, C_DOT, C_I8MM, C_SVE, N_CLASSES };

static uint64_t counts[N_CLASSES];
static int64_t marker = 0x7e1a;
static FILE *out;

/* A64 encodings (Arm ARM, C4.1): top-level op0 = bits 28..25. */
static void classify(uint32_t insn, unsigned n[N_CLASSES])
{
    n[C_TOTAL]++;
    uint32_t op0 = (insn >> 25) & 0xf;
    if ((op0 & 0x7) == 0x7) {               /* x111: data processing, SIMD and FP */
        n[C_SIMD_FP]++;
    } else if ((op0 & 0x7) == 0x6) {        /* x110: loads and stores of SIMD/FP registers */
        n[C_SIMD_LDST]++;
    } else if (op0 == 0x2) {                /* 0010: SVE */
        n[C_SVE]++;
    }
    if ((insn & 0x9fe0fc00) == 0x0e809400 ||    /* SDOT/UDOT (vector) */
        (insn & 0x9fc0f400) == 0x0f80e000 ||    /* SDOT/UDOT (by element) */
        (insn & 0xbfe0fc00) == 0x0e809c00 ||    /* USDOT (vector) */
        (insn & 0xbf40f400) == 0x0f00f000) {    /* SUDOT/USDOT (by element) */
        n[C_DOT]++;
    } else if ((insn & 0xdfe0f400) == 0x4e80a400) {  /* SMMLA/UMMLA/USMMLA */
        n[C_I8MM]++;
    }
}

static void vcpu_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    unsigned n[N_CLASSES] = {0};
    size_t n_insns = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n_insns; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word = 0;
        size_t size = qemu_plugin_insn_size(insn);
        memcpy(&word, qemu_plugin_insn_data(insn), size < 4 ? size : 4);
        classify(word, n);
    }
    for (int c = 0; c < N_CLASSES; c++) {
        if (n[c]) {
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counts[c], n[c]);
        }
    }
}

static void vcpu_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                         uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                         uint64_t a8)
{
    if (num != marker || !out) {
        return;
    }
    fprintf(out, "mark %" PRIu64, a1);
    for (int c = 0; c < N_CLASSES; c++) {
        fprintf(out, " %" PRIu64, counts[c]);
    }
    fputc('\n', out);
    fflush(out);
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
    if (out) {
        fprintf(out, "exit 0");
        for (int c = 0; c < N_CLASSES; c++) {
            fprintf(out, " %" PRIu64, counts[c]);
        }
        fputc('\n', out);
        fclose(out);
        out = NULL;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (g_str_has_prefix(argv[i], "out=")) {
            path = argv[i] + 4;
        } else if (g_str_has_prefix(argv[i], "marker=")) {
            marker = g_ascii_strtoll(argv[i] + 7, NULL, 0);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (expected out=PATH, marker=N)\n", argv[i]);
            return -1;
        }
    }
    if (!path) {
        fprintf(stderr, "insn_count: missing argument out=PATH\n");
        return -1;
    }
    out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "insn_count: cannot write %s\n", path);
        return -1;
    }
    fprintf(out, "classes total simd_fp simd_ldst dot i8mm sve\n");
    fflush(out);
    qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, vcpu_syscall);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
