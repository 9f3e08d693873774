// Bulk RTL simulation harness for a generated bnnforge top level (sim/bulk.py).
//
// Static file: compiled by Verilator (--cc --exe --build --prefix Vtop) against any
// generated <name>_top.v. Port widths are handled generically: Verilator gives a
// port of <= 64 bits an integer type and a wider one a VlWide<N> array of 32-bit
// words; the overloads below cover both.
//
// It mirrors sim/tb/tb_network.py cycle for cycle, including its random stream:
// the gap/stall draws use Python's random.Random(seed) (MT19937 seeded with
// init_by_array, random() = 53-bit double) in the same order, so with the same
// seed the bulk path sees the same input gaps and output backpressure as cocotb.
//
// Usage (working directory = the rtl dir, $readmemh paths are relative to it):
//   bulk_sim IN_FILE OUT_FILE IN_BEATS_PER_FRAME OUT_BEATS_PER_FRAME N_OUT
//            P_GAP P_STALL SEED MAX_CYCLES RESET_AT_CYCLE(-1 = none) RESET_CYCLES
// IN_FILE: one input beat per line, hex, most significant digit first.
// OUT_FILE: a header line "# key value ..." then one line per output beat:
//   "<cycle> <tlast> <hex tdata>", and a trailer "# status ..." line.

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

// ---------------------------------------------------------------- Python's MT19937
class PyRandom {
    static constexpr int N = 624, M = 397;
    uint32_t mt[N];
    int mti = N + 1;

    void init_genrand(uint32_t s) {
        mt[0] = s;
        for (mti = 1; mti < N; mti++)
            mt[mti] = 1812433253U * (mt[mti - 1] ^ (mt[mti - 1] >> 30)) + (uint32_t)mti;
    }
    void init_by_array(const uint32_t* key, int len) {
        init_genrand(19650218U);
        int i = 1, j = 0;
        for (int k = (N > len ? N : len); k; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525U)) + key[j] + (uint32_t)j;
            i++; j++;
            if (i >= N) { mt[0] = mt[N - 1]; i = 1; }
            if (j >= len) j = 0;
        }
        for (int k = N - 1; k; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941U)) - (uint32_t)i;
            i++;
            if (i >= N) { mt[0] = mt[N - 1]; i = 1; }
        }
        mt[0] = 0x80000000U;
    }
    uint32_t genrand() {
        static const uint32_t mag01[2] = {0x0U, 0x9908b0dfU};
        uint32_t y;
        if (mti >= N) {
            int kk;
            for (kk = 0; kk < N - M; kk++) {
                y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
                mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag01[y & 1U];
            }
            for (; kk < N - 1; kk++) {
                y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
                mt[kk] = mt[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 1U];
            }
            y = (mt[N - 1] & 0x80000000U) | (mt[0] & 0x7fffffffU);
            mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag01[y & 1U];
            mti = 0;
        }
        y = mt[mti++];
        y ^= (y >> 11);
        y ^= (y << 7) & 0x9d2c5680U;
        y ^= (y << 15) & 0xefc60000U;
        y ^= (y >> 18);
        return y;
    }

public:
    explicit PyRandom(uint64_t seed) {
        // random.Random(int): key = 32-bit chunks of abs(seed), least significant first
        uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        init_by_array(key, (seed >> 32) ? 2 : 1);
    }
    double random() {
        uint32_t a = genrand() >> 5, b = genrand() >> 6;
        return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
    }
};

// ---------------------------------------------------------------- port access
template <typename T>
struct PortWords {
    static constexpr size_t value = (sizeof(T) + 3) / 4;
};
template <std::size_t N>
struct PortWords<VlWide<N>> {
    static constexpr size_t value = N;
};

template <typename T>
static void put(T& port, const uint32_t* w) {
    uint64_t v = w[0];
    if (PortWords<T>::value > 1) v |= (uint64_t)w[1] << 32;
    port = (T)v;
}
template <std::size_t N>
static void put(VlWide<N>& port, const uint32_t* w) {
    for (size_t i = 0; i < N; i++) port.at(i) = w[i];
}

template <typename T>
static void get(const T& port, uint32_t* w) {
    uint64_t v = (uint64_t)port;
    w[0] = (uint32_t)v;
    if (PortWords<T>::value > 1) w[1] = (uint32_t)(v >> 32);
}
template <std::size_t N>
static void get(const VlWide<N>& port, uint32_t* w) {
    for (size_t i = 0; i < N; i++) w[i] = port.at(i);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Parse one hex line into nw little-endian 32-bit words; false on a bad or too wide line.
static bool parse_hex(const char* s, size_t len, uint32_t* w, size_t nw) {
    std::memset(w, 0, nw * 4);
    size_t nib = 0;
    for (size_t k = len; k-- > 0;) {
        int v = hexval(s[k]);
        if (v < 0) return false;
        if (v && nib / 8 >= nw) return false;
        if (nib / 8 < nw) w[nib / 8] |= (uint32_t)v << (4 * (nib % 8));
        nib++;
    }
    return len > 0;
}

static void write_hex(FILE* f, const uint32_t* w, size_t nw) {
    size_t top = nw;
    while (top > 1 && w[top - 1] == 0) top--;
    fprintf(f, "%x", w[top - 1]);
    for (size_t k = top - 1; k-- > 0;) fprintf(f, "%08x", w[k]);
}

int main(int argc, char** argv) {
    if (argc != 12) {
        fprintf(stderr, "usage: %s IN OUT IN_BPF OUT_BPF N_OUT P_GAP P_STALL SEED MAX_CYCLES RESET_AT RESET_CYCLES\n",
                argv[0]);
        return 2;
    }
    const char* in_path = argv[1];
    const char* out_path = argv[2];
    const long in_bpf = std::atol(argv[3]);
    const long out_bpf = std::atol(argv[4]);
    long n_out = std::atol(argv[5]);
    const double p_gap = std::atof(argv[6]);
    const double p_stall = std::atof(argv[7]);
    const uint64_t seed = std::strtoull(argv[8], nullptr, 10);
    const long long max_cycles = std::atoll(argv[9]);
    const long long reset_at = std::atoll(argv[10]);
    const int reset_cycles = std::atoi(argv[11]);

    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vtop>(ctx.get());

    constexpr size_t IW = PortWords<std::remove_reference_t<decltype(top->s_axis_tdata)>>::value;
    constexpr size_t OW = PortWords<std::remove_reference_t<decltype(top->m_axis_tdata)>>::value;

    // ---- input beats
    std::vector<uint32_t> beats;
    {
        FILE* f = std::fopen(in_path, "r");
        if (!f) { perror(in_path); return 2; }
        char* line = nullptr;
        size_t cap = 0;
        ssize_t len;
        uint32_t w[IW];
        long lineno = 0;
        while ((len = getline(&line, &cap, f)) >= 0) {
            lineno++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            if (len == 0) continue;
            if (!parse_hex(line, (size_t)len, w, IW)) {
                fprintf(stderr, "%s:%ld: bad or too wide hex beat for a %zu-word port\n", in_path, lineno, IW);
                return 2;
            }
            beats.insert(beats.end(), w, w + IW);
        }
        free(line);
        std::fclose(f);
    }
    const long n_in = (long)(beats.size() / IW);

    FILE* out = std::fopen(out_path, "w");
    if (!out) { perror(out_path); return 2; }
    fprintf(out, "# in_words %zu out_words %zu in_beats %ld\n", IW, OW, n_in);

    PyRandom rng(seed);
    auto tick = [&]() {
        top->ap_clk = 1;
        top->eval();
        top->ap_clk = 0;
        top->eval();
    };
    auto zero_in = [&]() {
        uint32_t z[IW] = {0};
        put(top->s_axis_tdata, z);
    };

    // reset, as tb_network.py: 4 cycles low, then one edge with ap_rst_n high
    top->ap_clk = 0;
    top->ap_rst_n = 0;
    top->s_axis_tvalid = 0;
    zero_in();
    top->s_axis_tlast = 0;
    top->m_axis_tready = 0;
    top->eval();
    for (int k = 0; k < 4; k++) tick();
    top->ap_rst_n = 1;
    tick();

    long i = 0, got = 0, got_before_reset = -1, restart_beat = -1;
    bool pending = false, timed_out = false;
    long long cycle = 0;
    uint32_t ow[OW];
    while (got < n_out) {
        if (cycle >= max_cycles) { timed_out = true; break; }
        if (reset_at >= 0 && cycle == reset_at) {
            // mid-stream reset: ap_rst_n low for reset_cycles edges, inputs idle; then
            // resume with the first frame whose input had not started being accepted
            got_before_reset = got;
            restart_beat = ((i + in_bpf - 1) / in_bpf) * in_bpf;
            fprintf(out, "# reset cycle %lld beats_in %ld out_before %ld restart_beat %ld\n", cycle, i, got,
                    restart_beat);
            i = restart_beat;
            pending = false;
            top->s_axis_tvalid = 0;
            top->s_axis_tlast = 0;
            top->m_axis_tready = 0;
            top->ap_rst_n = 0;
            for (int k = 0; k < reset_cycles; k++) { tick(); cycle++; }
            top->ap_rst_n = 1;
            // outputs still owed: what came before + every frame fed from restart_beat
            n_out = got + ((n_in - restart_beat) / in_bpf) * out_bpf;
            if (got >= n_out) break;
        }
        if (!pending && i < n_in && (p_gap == 0.0 || rng.random() >= p_gap)) {
            pending = true;
            put(top->s_axis_tdata, &beats[(size_t)i * IW]);
            top->s_axis_tlast = ((i + 1) % in_bpf) == 0;
        }
        top->s_axis_tvalid = pending;
        const bool ready = p_stall == 0.0 || rng.random() >= p_stall;
        top->m_axis_tready = ready;
        top->eval();
        if (pending && top->s_axis_tready) {
            i++;
            pending = false;
        }
        if (ready && top->m_axis_tvalid) {
            get(top->m_axis_tdata, ow);
            fprintf(out, "%lld %d ", cycle, (int)top->m_axis_tlast);
            write_hex(out, ow, OW);
            fputc('\n', out);
            got++;
        }
        // rising edge; the falling edge needs no eval of its own: the next
        // iteration's eval (new inputs, clock low) settles it, nothing is negedge
        top->ap_clk = 1;
        top->eval();
        top->ap_clk = 0;
        cycle++;
    }
    // no extra beats may follow
    long extra = 0;
    if (!timed_out) {
        top->s_axis_tvalid = 0;
        top->m_axis_tready = 1;
        for (int k = 0; k < 16; k++) {
            top->eval();
            extra += top->m_axis_tvalid ? 1 : 0;
            tick();
        }
    }
    top->final();
    fprintf(out, "# status %s cycles %lld beats_in %ld beats_out %ld extra %ld\n", timed_out ? "timeout" : "ok",
            cycle, i, got, extra);
    std::fclose(out);
    return timed_out ? 3 : 0;
}
