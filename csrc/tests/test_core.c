/*
 * test_core.c — standalone unit tests for csrc/engine_core.c.
 *
 * Covers XXH64 against known vectors, encode -> decode round trips of the
 * transaction record and the snapshot block, every decoder error code (a
 * valid buffer broken in one specific way), the documented check order, and
 * truncation of valid buffers at every length, and eng_tx_find_stream (the same
 * verdict as the decoder on every record here, its hits, exact matching, UTF-8). Each check counts once; the
 * program prints "N passed, M failed" and exits non-zero if M > 0.
 *
 * Build (see csrc/run_c_tests.sh):
 *   gcc -std=c11 -Wall -Wextra -Werror -Icsrc csrc/tests/test_core.c \
 *       csrc/engine_core.c -o test_core
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_format.h"
#include "engine_index.h"

/* ------------------------------------------------------------ Harness --- */

static int g_pass, g_fail;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (cond) {                                               \
            g_pass++;                                             \
        } else {                                                  \
            g_fail++;                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                         \
            fputc('\n', stderr);                                  \
        }                                                         \
    } while (0)

#define CHECK_RC(got, want, what)                                      \
    do {                                                               \
        long long got_ = (long long)(got), want_ = (long long)(want);  \
        CHECK(got_ == want_, "%s: got %lld, want %lld", (what), got_,  \
              want_);                                                  \
    } while (0)

/* A malloc'd copy of p[0..n) of exactly n bytes (1 if n == 0), so ASan and
 * valgrind see any read past the end. Aborts on allocation failure. */
static uint8_t *dup_exact(const uint8_t *p, size_t n) {
    uint8_t *q = (uint8_t *)malloc(n ? n : 1);
    if (q == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    if (n) memcpy(q, p, n);
    return q;
}

static void put32(uint8_t *p, uint32_t v) {
    int i;
    for (i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------- XXH64 --- */

/*
 * Expected values produced with the reference implementation through the
 * Python binding (xxhash 4.1.0):
 *
 *   import xxhash
 *   def pat(n): return bytes(((i * 131 + 7) & 0xff) for i in range(n))
 *   for n in range(101):
 *       print([xxhash.xxh64_intdigest(pat(n), s) for s in (0, 1, 2**64 - 1)])
 *
 * Row n is the pattern of n bytes, columns are seeds 0, 1, 2**64-1.
 */
static const uint64_t PATTERN_VECTORS[101][3] = {
    /*   0 */ {0xEF46DB3751D8E999ULL, 0xD5AFBA1336A3BE4BULL, 0x298F4C84B24F5380ULL},
    /*   1 */ {0xA96C7F0CE858BBB7ULL, 0x0766883A0A47A96AULL, 0xD7F46261BA7C5B95ULL},
    /*   2 */ {0xC22C6A70AD56BBA6ULL, 0x7C6CC620A3AF2705ULL, 0xDCDBADEE8AD39708ULL},
    /*   3 */ {0xBED43740EE6332BBULL, 0x95BA63F005E6E6CAULL, 0x50127E93A7B8310DULL},
    /*   4 */ {0xFA212AE44B3BB23DULL, 0x319607B5CA9D59D4ULL, 0x7EBCE9BBE6F6EEBDULL},
    /*   5 */ {0xD339DCC9AC8E6776ULL, 0xE07F25FB3A8E5DE9ULL, 0xCD856D2E5F2C6A31ULL},
    /*   6 */ {0x71CABDC85DA7FFA0ULL, 0x0D9AF9B31282D277ULL, 0xADB020FF5AC9D69DULL},
    /*   7 */ {0x2744460DD675D2C0ULL, 0x0047CDCE49D4BC99ULL, 0x6F0993BD5D623D42ULL},
    /*   8 */ {0x994B676B71CE94DDULL, 0xC14D78E582FE5026ULL, 0x23470C129CFB3DC4ULL},
    /*   9 */ {0x572B84C18B983AF8ULL, 0xDB001655FE3A4B7AULL, 0x26F26E402D3E77E0ULL},
    /*  10 */ {0x08283FD40EE4F8C9ULL, 0x2836514074733468ULL, 0xB26605769A451F2BULL},
    /*  11 */ {0x97F078DA7A1A590CULL, 0x62C2478E2BEB60A5ULL, 0xD7CCBEAAD61169A4ULL},
    /*  12 */ {0xB92F588CE720786EULL, 0x23EB959821A629A9ULL, 0x612C418A90C4B80DULL},
    /*  13 */ {0xDADC8A6255B4829BULL, 0x259671871DE445F2ULL, 0xB4070A14F8123476ULL},
    /*  14 */ {0x574269377227D80AULL, 0x87C802DBB17A6363ULL, 0x540606CC59FFA3B0ULL},
    /*  15 */ {0x09E6451ED2FF8B1DULL, 0x40A4206CC723CCE4ULL, 0xF4E3F407FEF30B4CULL},
    /*  16 */ {0x94AD0095E72B24D5ULL, 0x0C9B8F12F2AE6C76ULL, 0x3DAE65FB793758C3ULL},
    /*  17 */ {0x1464F2EFF23B5FE1ULL, 0x418DF2ECDE29D078ULL, 0xC19621669AA3E9F1ULL},
    /*  18 */ {0x712C39F6D1ED935EULL, 0xF5F83C906F070D1FULL, 0xFC797C4C43F086A3ULL},
    /*  19 */ {0x83EF9C758393E89DULL, 0x5BBE88610E6D969AULL, 0x6121F9CDDF2F2C2EULL},
    /*  20 */ {0x67822FA80E0C8933ULL, 0xEA15F4C173ABD1D5ULL, 0x80F40F7D7F444BE8ULL},
    /*  21 */ {0xFA6DE19E99FF8D43ULL, 0xE6EDCE78ED3A250AULL, 0xD62CB94F77CE50EEULL},
    /*  22 */ {0xA8D0AE04D79885F2ULL, 0x08C27FAD7BE08CF8ULL, 0x045AECF4BECAFD44ULL},
    /*  23 */ {0xCF65B69586B05FABULL, 0x659CEE761195B68AULL, 0x303A9A94F70F475BULL},
    /*  24 */ {0x0A3B0194F3AFE0B8ULL, 0x7BC87E813BE3B7C8ULL, 0x8BB7E19961E7D5BBULL},
    /*  25 */ {0xE0FD072FFF811C86ULL, 0x8B2705F6773A1BEEULL, 0xD953E00A58E49975ULL},
    /*  26 */ {0xC4F7372A7FB8F247ULL, 0xF7C5ECC5E8BEFDA5ULL, 0x10558AD276EB925DULL},
    /*  27 */ {0xFEE26CAC05AEECF0ULL, 0xF3E3F3C033C10DFEULL, 0xDADC0F916A38058FULL},
    /*  28 */ {0x01A6F3D224FA7D3BULL, 0xD26DF1663943F44CULL, 0xC9DC4B184508D78CULL},
    /*  29 */ {0x161A3BC98AFCF092ULL, 0x619101EE2B316452ULL, 0x9D3476A95C0D3A48ULL},
    /*  30 */ {0x3F8796D7BFAAAA08ULL, 0xB2D7E2E3AE8B7C23ULL, 0xF86C5353B770FB5CULL},
    /*  31 */ {0x6711D55E306B5D8FULL, 0xE811D10B03941E82ULL, 0x0559625F4E0AFE08ULL},
    /*  32 */ {0x07F7B8E3BC5D6E25ULL, 0xDF4F0F6EA84EBBCAULL, 0xD5DB58B1A19EEFB2ULL},
    /*  33 */ {0x09F85EEB4E1CBE9FULL, 0x489F1772049E476CULL, 0x303C4A232C3BD093ULL},
    /*  34 */ {0x35284E7F91DD1AE5ULL, 0x2373A61CDBBFE11DULL, 0x9E34C9F60E9D6FB3ULL},
    /*  35 */ {0x25CC31E4544BC8C9ULL, 0xF09941B1088ECC8AULL, 0xC368377E6350B63AULL},
    /*  36 */ {0xE7AC625222F2B655ULL, 0xF98561C7D7156BB9ULL, 0xB748680CD7EB0370ULL},
    /*  37 */ {0x1D8C3A2215085739ULL, 0x34ABA417598832E7ULL, 0x708BB52EECB71BF6ULL},
    /*  38 */ {0x1FB3064ED36C675FULL, 0x57A44530CDDE8FFBULL, 0xB23F6E0014616770ULL},
    /*  39 */ {0xB13C137A0FB701C3ULL, 0xE14770F2361B5307ULL, 0x2AEEA2A9BC73ADE7ULL},
    /*  40 */ {0xD25150177BA46490ULL, 0x9B1FD1EC1DB110C1ULL, 0x71263E98354A3147ULL},
    /*  41 */ {0x3AD8BB2779D9285EULL, 0xF4E87AA17BAE9412ULL, 0xF76B30A446E91A85ULL},
    /*  42 */ {0xFE4DDAB6E3D75DDCULL, 0x164B94DE116D04A5ULL, 0xC5AEC19DA81428DEULL},
    /*  43 */ {0x9D340603AA03CC62ULL, 0x482442B5C45FCFC6ULL, 0x5BE1BB13D0D92AD6ULL},
    /*  44 */ {0xD02B2028C27A5329ULL, 0xEA70FDB66ADDA7BEULL, 0x83C94324A1EBB836ULL},
    /*  45 */ {0xFF59426B0066066BULL, 0xEDD33D7EF1EAFB7DULL, 0x617317FCF5145073ULL},
    /*  46 */ {0x713A114207F600E2ULL, 0x2546490B2E265CD9ULL, 0x6DAE42A96112E529ULL},
    /*  47 */ {0x79BD9D6DD8C15570ULL, 0x50D46FC41711A14AULL, 0x686497DB87A0DAD3ULL},
    /*  48 */ {0x2947DE5E3A6AFECEULL, 0xB101191636A893EFULL, 0x03306A2A4029BFABULL},
    /*  49 */ {0x43F1E784039912D3ULL, 0xF0DBB854D2AAFFB9ULL, 0x26650BCCD5C7EA01ULL},
    /*  50 */ {0x072FA9968401E9C7ULL, 0xE0F2003CFE5335D4ULL, 0x9AF264EF6539475FULL},
    /*  51 */ {0xC3C4FF0D8F66E206ULL, 0x3D24A8FEA857B300ULL, 0xB01F25FFC02E4E28ULL},
    /*  52 */ {0x0EFBC3939FA05814ULL, 0xF9E97B0B9BD98310ULL, 0xB64BE18259C8BA18ULL},
    /*  53 */ {0x42BE842D0902D7A7ULL, 0xE8E2064784BE2D5DULL, 0xD1A557FF209E41DCULL},
    /*  54 */ {0x8A78B907C424DC46ULL, 0xD64947C8BEA69D17ULL, 0x9F73DC3B5FE5CE80ULL},
    /*  55 */ {0x8F8DC5B07F6D48EDULL, 0x1FBC90668648BACEULL, 0xAEE4B032DF8AFD42ULL},
    /*  56 */ {0xA2ACF5B431DB2E52ULL, 0x56571818C8244B16ULL, 0xF1BB4E2559164060ULL},
    /*  57 */ {0x403200F5D0354116ULL, 0x8D4A3C811F7421F3ULL, 0xD52FEDAFEFAF2BE5ULL},
    /*  58 */ {0xC326A3D65678339BULL, 0x7F443B76619A0C91ULL, 0x121BD898E76C50FEULL},
    /*  59 */ {0xA53B8E5BC9FF65A4ULL, 0x072F38CC703D87E7ULL, 0xB4236D0FD74AF2E0ULL},
    /*  60 */ {0x4CCE586D8ACA19E5ULL, 0x715729A9EAA4C91CULL, 0x403C94633E7561A4ULL},
    /*  61 */ {0xBD3BD33486AF6DC6ULL, 0x9B1AB2D01A6ABC9AULL, 0x7A672AE5E84BD45AULL},
    /*  62 */ {0x4149DD403B20A2DCULL, 0xAEE51A787FBC7497ULL, 0xEE8E8E54A5A57331ULL},
    /*  63 */ {0xB7C9968C066CB6A5ULL, 0xBE65BC64322F219BULL, 0x5B30F335733619ABULL},
    /*  64 */ {0x50D4159A0411632EULL, 0x8EA281CE694F574DULL, 0xB59713BEE12A76BDULL},
    /*  65 */ {0xD277176BFF863EFCULL, 0x1B26DDAA63626478ULL, 0x176D96610B7F90D1ULL},
    /*  66 */ {0x578BA93DAAAA4333ULL, 0x54061F724CF94B16ULL, 0x0630872D7AC3A72FULL},
    /*  67 */ {0x5C44AB49F377E73FULL, 0x0D099DBCA44002CFULL, 0xBF41A30EFF3C585CULL},
    /*  68 */ {0x0074FD38E968C15BULL, 0xBAEFF9C7742231C3ULL, 0x44388E3DCF7929E2ULL},
    /*  69 */ {0xDD2AA690F53212C8ULL, 0x048A5BDD9B90AE5AULL, 0xA13B8C6834795FBBULL},
    /*  70 */ {0xA4B1256E6FD1D806ULL, 0xA81E322ADD195B03ULL, 0x7DBDA43A72D75920ULL},
    /*  71 */ {0x363A593DC9D738D1ULL, 0xFB166BF2C85CD64AULL, 0x5C832D000096411FULL},
    /*  72 */ {0xCD82801D226EB2A5ULL, 0x205CEFBA084D4CD0ULL, 0x7B511102BBE50D3CULL},
    /*  73 */ {0x5D19A4C3F67B2BEAULL, 0x1F04650804EEDB9FULL, 0x19EE78275AA522A6ULL},
    /*  74 */ {0xBB7DB43EA46E9A29ULL, 0x3DA326E82962D77FULL, 0xF0275D244C2C1BBBULL},
    /*  75 */ {0xD608A44E07FE8624ULL, 0x511AAACFCC4B426AULL, 0x272764FAB6958490ULL},
    /*  76 */ {0x869E11664E92C3B4ULL, 0xE85496A0E50128C0ULL, 0xA3E5045C8904D850ULL},
    /*  77 */ {0x162CE6431A7EDA2AULL, 0xF08233EFDAC74EB7ULL, 0x77404F5C20A9FC0EULL},
    /*  78 */ {0xF3CB7538A89612BBULL, 0xD4BC6FEE76EE9698ULL, 0x28E44F90FC297755ULL},
    /*  79 */ {0xC3F3DC0BF60FD094ULL, 0x8F8129C04DC56599ULL, 0xCFD7D2F421000C7CULL},
    /*  80 */ {0x16538439A19AB93EULL, 0xACD36355FC91D3A5ULL, 0xDE1FC502D9CFD41AULL},
    /*  81 */ {0x71BF4A997E4BC698ULL, 0x788924BD1A20A2E8ULL, 0xE5A312BAD03BD6DBULL},
    /*  82 */ {0x81F5F158A1769C15ULL, 0xB59506520F6A1DC3ULL, 0xEEF006001BACB882ULL},
    /*  83 */ {0x01F5909A472FEA86ULL, 0x59ECE89C49DAF32AULL, 0xED0EA21949E88A07ULL},
    /*  84 */ {0x6187BF0BF8DFA176ULL, 0x0FFAE5BD64052D4DULL, 0x343E452924DFDDF8ULL},
    /*  85 */ {0x411B4022BB181B45ULL, 0xF9ACE306A0616D7CULL, 0xF672D628EA31AF9DULL},
    /*  86 */ {0x8EB62F30A8FA66A5ULL, 0x7D6C931DE34FACDCULL, 0xEA280878942DD517ULL},
    /*  87 */ {0xF4B43A97D47F5F98ULL, 0xD2B592CFB8F3DA23ULL, 0x35DED92247D14C4AULL},
    /*  88 */ {0x91B6179102C221C2ULL, 0x4066B9033349C00BULL, 0xACCB546F1B9AB0ADULL},
    /*  89 */ {0xE1A6E5A7B8596FDDULL, 0xAE141ADD980A4D81ULL, 0x9ECA0E74FFE6A777ULL},
    /*  90 */ {0xBDA467AB983B5874ULL, 0x57217780961B2D95ULL, 0xF9E532756C4F352BULL},
    /*  91 */ {0x81082EEE7357B6B0ULL, 0x2C2DDB83698DB57BULL, 0xDFBAE54BD8C4AF3BULL},
    /*  92 */ {0xF8F1612FD1C10A43ULL, 0xBF06FC1592483591ULL, 0x0BEDE5EE3119F020ULL},
    /*  93 */ {0x44B5DC960D90D5BDULL, 0xC0BC78453FE97EC7ULL, 0xC55D23DD78DF0F8FULL},
    /*  94 */ {0x64904FDD7296CC2EULL, 0xE0D45B477F8BF09EULL, 0x887E42A4E4184B63ULL},
    /*  95 */ {0x928C35B989D3C594ULL, 0x9E0488742C00C5BCULL, 0xF08BDCBF71489F8AULL},
    /*  96 */ {0x18C8F362EB735341ULL, 0x8EF95849002329DDULL, 0x0566DCC7F19C5BDDULL},
    /*  97 */ {0x7683DEFA1456DAB5ULL, 0x81FB2CAC0A1D5E0CULL, 0x6E839DB289759E15ULL},
    /*  98 */ {0xA4D9F00E9F94203CULL, 0xB06EA2656ADEE344ULL, 0x7055749D0A3DA3E1ULL},
    /*  99 */ {0x285A4A54A4A84AB4ULL, 0xA71B9BDE10C52C0EULL, 0x984EBAE25B72D227ULL},
    /* 100 */ {0x9DDADA11D3DC2D8FULL, 0xE6A0D25E6E0A7F2AULL, 0x8B8B9E7C59F840E0ULL},
};

static const uint64_t PATTERN_SEEDS[3] = {0, 1, UINT64_MAX};

static void pattern(uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + 7) & 0xff);
}

static void test_xxh64(void) {
    uint8_t buf[1000];
    size_t n;
    int s;

    /* xxhash.xxh64_intdigest(b"", 0), (b"a", 0), (b"abc", 0) */
    CHECK(eng_xxh64(NULL, 0, 0) == 0xEF46DB3751D8E999ULL, "xxh64(empty, NULL)");
    CHECK(eng_xxh64("", 0, 0) == 0xEF46DB3751D8E999ULL, "xxh64(empty)");
    CHECK(eng_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5BULL, "xxh64(\"a\")");
    CHECK(eng_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ULL, "xxh64(\"abc\")");

    for (n = 0; n <= 100; n++) {
        uint8_t *heap;
        pattern(buf, n);
        heap = dup_exact(buf, n);
        for (s = 0; s < 3; s++) {
            uint64_t got = eng_xxh64(heap, n, PATTERN_SEEDS[s]);
            CHECK(got == PATTERN_VECTORS[n][s],
                  "xxh64(pattern %zu, seed %d): got %016llx want %016llx", n, s,
                  (unsigned long long)got, (unsigned long long)PATTERN_VECTORS[n][s]);
        }
        free(heap);
    }

    /* 1000-byte pattern: [xxhash.xxh64_intdigest(pat(1000), s) for s in seeds] */
    pattern(buf, sizeof buf);
    CHECK(eng_xxh64(buf, 1000, 0) == 0x0BF0BDBCC82EB373ULL, "xxh64(pattern 1000, 0)");
    CHECK(eng_xxh64(buf, 1000, 1) == 0x82F34486D530BE54ULL, "xxh64(pattern 1000, 1)");
    CHECK(eng_xxh64(buf, 1000, UINT64_MAX) == 0x2EBD51D295F7EA0BULL,
          "xxh64(pattern 1000, 2**64-1)");

    /* Unaligned input gives the same hash as aligned input. */
    {
        uint8_t shifted[1001];
        memcpy(shifted + 1, buf, 1000);
        for (n = 0; n <= 100; n++)
            CHECK(eng_xxh64(shifted + 1, n, 0) == PATTERN_VECTORS[n][0],
                  "xxh64 unaligned, length %zu", n);
    }
}

/* --------------------------------------------------- Transaction record --- */

/* The sample record: 3 events. */
static const uint64_t TX_VERSIONS[3] = {1, 2, 7};
static const uint64_t TX_PREV[3] = {0, 10, 20};
static const uint32_t TX_DLENS[3] = {3, 0, 5};
static const uint8_t TX_STREAMS[] = "alpha\0b\0ccc";   /* 12 bytes incl. last NUL */
static const uint8_t TX_TYPES[] = "T1\0T2\0Type3";     /* 12 bytes */
static const uint8_t TX_DATA[] = "abcdefgh";           /* 8 bytes used */
#define TX_N 3u
#define TX_SL 12u
#define TX_TL 12u
#define TX_DL 8u

/* Encodes the sample record with the given name columns into out; returns size. */
static size_t tx_sample_with(uint8_t *out, size_t cap, const uint8_t *streams,
                             uint32_t sl, const uint8_t *types, uint32_t tl) {
    int64_t r = eng_tx_encode(11, 22, 33, 44, TX_N, TX_VERSIONS, TX_PREV, TX_DLENS,
                              streams, sl, types, tl, TX_DATA, TX_DL, NULL, 0, out, cap);
    if (r <= 0) {
        fprintf(stderr, "sample tx encode failed: %lld\n", (long long)r);
        exit(2);
    }
    return (size_t)r;
}

static size_t tx_sample(uint8_t *out, size_t cap) {
    return tx_sample_with(out, cap, TX_STREAMS, TX_SL, TX_TYPES, TX_TL);
}

/* Recomputes the record trailer over buf[0..len-8). */
static void tx_resign(uint8_t *buf, size_t len) {
    put64(buf + len - 8, eng_xxh64(buf, len - 8, 0));
}

/* Decodes an exact-size heap copy of buf[0..len). eng_tx_find_stream runs on
 * the same copy and must give the same verdict (the records here have ASCII
 * names, so its UTF-8 check never decides): every decoder case below is a case
 * of the finder too. */
static int tx_decode_copy(const uint8_t *buf, size_t len, eng_tx_view *v) {
    uint8_t *c = dup_exact(buf, len);
    int rc = eng_tx_decode(c, len, v);
    eng_tx_view fv;
    eng_stream_hit h[4];
    int64_t fr = eng_tx_find_stream(c, len, (const uint8_t *)"b", 1, &fv, h, 4);
    CHECK(rc == ENG_OK ? fr >= 0 : fr == rc, "find_stream agrees with decode: %d vs %lld",
          rc, (long long)fr);
    free(c);
    return rc;
}

static void test_tx_roundtrip(void) {
    uint8_t buf[512];
    eng_tx_view v;
    size_t len = tx_sample(buf, sizeof buf);
    size_t want = 56 + 20 * 3 + 12 + 12 + 8 + 8;
    uint32_t i;

    CHECK(len == want, "tx size: got %zu want %zu", len, want);
    CHECK(eng_tx_encoded_size(3, 12, 12, 8, 0) == want, "eng_tx_encoded_size");
    CHECK(eng_tx_encoded_size(UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, 0) ==
              (SIZE_MAX > UINT32_MAX ? (size_t)(64 + 23 * (uint64_t)UINT32_MAX) : 0),
          "eng_tx_encoded_size at u32 limits");
    CHECK(memcmp(buf, "ETXR", 4) == 0, "tx magic written");
    CHECK(get64(buf + len - 8) == eng_xxh64(buf, len - 8, 0), "tx trailer");

    CHECK_RC(tx_decode_copy(buf, len, &v), ENG_OK, "tx decode sample");
    CHECK(v.format_version == 1 && v.flags == 0, "tx version/flags");
    CHECK(v.tx_id == 11 && v.epoch == 22 && v.ts_ns == 33 && v.first_position == 44,
          "tx header ints");
    CHECK(v.event_count == 3 && v.streams_len == 12 && v.types_len == 12 &&
              v.data_len == 8, "tx sizes");
    CHECK(v.versions_off == 56 && v.prev_off == 80 && v.data_lens_off == 104 &&
              v.streams_off == 116 && v.types_off == 128 && v.data_off == 140,
          "tx offsets");
    for (i = 0; i < 3; i++) {
        CHECK(get64(buf + v.versions_off + 8 * i) == TX_VERSIONS[i], "tx version %u", i);
        CHECK(get64(buf + v.prev_off + 8 * i) == TX_PREV[i], "tx prev %u", i);
        CHECK(get32(buf + v.data_lens_off + 4 * i) == TX_DLENS[i], "tx dlen %u", i);
    }
    CHECK(memcmp(buf + v.streams_off, TX_STREAMS, 12) == 0, "tx streams column");
    CHECK(memcmp(buf + v.types_off, TX_TYPES, 12) == 0, "tx types column");
    CHECK(memcmp(buf + v.data_off, TX_DATA, 8) == 0, "tx data column");

    /* One event, empty data, NULL data pointer. */
    {
        uint64_t ver = 5, prev = 4;
        uint32_t dl = 0;
        int64_t r = eng_tx_encode(1, 0, 0, 0, 1, &ver, &prev, &dl,
                                  (const uint8_t *)"s", 2, (const uint8_t *)"t", 2,
                                  NULL, 0, NULL, 0, buf, sizeof buf);
        CHECK_RC(r, 56 + 20 + 2 + 2 + 0 + 8, "tx encode one event");
        CHECK_RC(tx_decode_copy(buf, (size_t)r, &v), ENG_OK, "tx decode one event");
        CHECK(v.data_len == 0 && v.data_off + 0 == (size_t)r - 8, "tx one-event view");
    }
}

/* One-event record of tx `tx`, epoch `epoch`, at position `pos` into out. */
static size_t seg_rec(uint8_t *out, size_t cap, uint64_t tx, uint64_t epoch, uint64_t pos) {
    uint64_t ver = 1, prev = 0;
    uint32_t dl = 3;
    int64_t r = eng_tx_encode(tx, epoch, 7, pos, 1, &ver, &prev, &dl,
                              (const uint8_t *)"s", 2, (const uint8_t *)"t", 2,
                              (const uint8_t *)"abc", 3, NULL, 0, out, cap);
    if (r <= 0) exit(2);
    return (size_t)r;
}

static void test_seg_frame(void) {
    uint8_t recs[512], out[600];
    uint32_t lens[3], bad = 99;
    size_t off = 0, i;
    uint64_t pos = 9;
    int64_t r;

    for (i = 0; i < 3; i++) {
        lens[i] = (uint32_t)seg_rec(recs + off, sizeof recs - off, 5 + i, 2, 10 + i);
        off += lens[i];
    }
    r = eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad);
    CHECK_RC(r, (int64_t)(off + 12), "seg frame: bytes written");
    CHECK(pos == 12 && bad == 3, "seg frame: last position advanced (%llu)",
          (unsigned long long)pos);
    CHECK(get32(out) == lens[0] && memcmp(out + 4, recs, lens[0]) == 0, "seg frame: first");
    CHECK(get32(out + 4 + lens[0]) == lens[1], "seg frame: second length");

    pos = 9;
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 6, 2, &pos, out, sizeof out, &bad),
             ENG_E_FIELD, "seg frame: wrong first tx");
    CHECK(bad == 0 && pos == 9, "seg frame: bad index 0, position untouched");
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 5, 3, &pos, out, sizeof out, &bad),
             ENG_E_FIELD, "seg frame: wrong epoch");
    pos = 10;
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad),
             ENG_E_FIELD, "seg frame: positions do not continue");
    pos = UINT64_MAX;
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad),
             ENG_E_FIELD, "seg frame: position at the u64 limit");
    pos = 9;
    recs[lens[0] + 20] ^= 1; /* damage record 1 */
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad),
             ENG_E_CHECKSUM, "seg frame: damaged record");
    CHECK(bad == 1, "seg frame: damaged record index");
    recs[lens[0] + 20] ^= 1;
    CHECK_RC(eng_seg_frame(recs, off - 1, lens, 3, 5, 2, &pos, out, sizeof out, &bad),
             ENG_E_ARG, "seg frame: lens not summing to recs_len");
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, off + 11, &bad),
             ENG_E_ARG, "seg frame: out too small");
    CHECK_RC(eng_seg_frame(recs, off, lens, 0, 5, 2, &pos, out, sizeof out, &bad),
             ENG_E_ARG, "seg frame: no records");
    CHECK_RC(eng_seg_frame(NULL, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad),
             ENG_E_ARG, "seg frame: NULL records");
    CHECK_RC(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, NULL),
             ENG_E_ARG, "seg frame: NULL bad");
    {   /* the same run through one pointer per record (eng_seg_frame_v) */
        const uint8_t *ptrs[3] = {recs, recs + lens[0], recs + lens[0] + lens[1]};
        uint8_t out2[600];
        pos = 9;
        CHECK_RC(eng_seg_frame_v(ptrs, lens, 3, 5, 2, &pos, out2, sizeof out2, &bad),
                 (int64_t)(off + 12), "seg frame v: bytes written");
        pos = 9;
        CHECK(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad) ==
                  (int64_t)(off + 12) && memcmp(out, out2, off + 12) == 0,
              "seg frame v: same body as the contiguous run");
        ptrs[1] = NULL;
        pos = 9;
        CHECK_RC(eng_seg_frame_v(ptrs, lens, 3, 5, 2, &pos, out2, sizeof out2, &bad),
                 ENG_E_ARG, "seg frame v: NULL record");
        CHECK(bad == 1, "seg frame v: NULL record index");
        CHECK_RC(eng_seg_frame_v(ptrs, lens, 3, 5, 2, &pos, out2, off + 11, &bad), ENG_E_ARG,
                 "seg frame v: out too small");
        CHECK_RC(eng_seg_frame_v(NULL, lens, 3, 5, 2, &pos, out2, sizeof out2, &bad),
                 ENG_E_ARG, "seg frame v: NULL array");
    }
    lens[0] -= 1; /* a record cut short: it must not decode, and nothing overruns */
    lens[1] += 1;
    CHECK(eng_seg_frame(recs, off, lens, 3, 5, 2, &pos, out, sizeof out, &bad) < 0 &&
              bad == 0, "seg frame: shifted boundaries");
}

static void test_seg_seal(void) {
    uint8_t head[5] = {1, 2, 3, 4, 5}, body[7] = {9, 8, 7, 6, 5, 4, 3}, out[40], want[12];
    int64_t r;

    memcpy(want, head, 5);
    memcpy(want + 5, body, 7);
    memset(out, 0xA5, sizeof out);
    r = eng_seg_seal(head, 5, body, 7, out, 28);
    CHECK_RC(r, 28, "seg seal: bytes written (exact fit)");
    CHECK(memcmp(out, want, 12) == 0, "seg seal: head then body");
    CHECK(get64(out + 12) == eng_xxh64(want, 12, 0), "seg seal: footer checksum");
    CHECK(memcmp(out + 20, ENG_SEG_END_MAGIC, 8) == 0, "seg seal: end magic");
    CHECK(out[28] == 0xA5, "seg seal: wrote past its size");
    CHECK_RC(eng_seg_seal(head, 5, NULL, 0, out, sizeof out), 21, "seg seal: empty body");
    CHECK_RC(eng_seg_seal(head, 5, body, 7, out, 27), ENG_E_ARG, "seg seal: out one short");
    CHECK_RC(eng_seg_seal(NULL, 5, body, 7, out, sizeof out), ENG_E_ARG, "seg seal: NULL head");
    CHECK_RC(eng_seg_seal(head, 5, NULL, 7, out, sizeof out), ENG_E_ARG, "seg seal: NULL body");
    CHECK_RC(eng_seg_seal(head, 5, body, 7, NULL, sizeof out), ENG_E_ARG, "seg seal: NULL out");
    CHECK_RC(eng_seg_seal(head, SIZE_MAX, body, 7, out, sizeof out), ENG_E_ARG,
             "seg seal: size overflow");
    CHECK_RC(eng_seg_seal(head, SIZE_MAX - 20, body, 7, out, sizeof out), ENG_E_ARG,
             "seg seal: footer overflow");
}

static void test_xxh64_v(void) {
    uint8_t buf[100];
    size_t i, a, b, n;
    int bad = 0;

    for (i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 37 + 11);
    /* every split of every prefix into three parts (some empty) equals the one-shot */
    for (n = 0; n <= sizeof buf; n++) {
        for (a = 0; a <= n; a++) {
            for (b = a; b <= n; b++) {
                const uint8_t *parts[3] = {buf, buf + a, buf + b};
                size_t lens[3] = {a, b - a, n - b};
                if (eng_xxh64_v(parts, lens, 3, 7) != eng_xxh64(buf, n, 7)) bad++;
            }
        }
    }
    CHECK(bad == 0, "xxh64_v: %d splits differ from the one-shot hash", bad);
    {
        const uint8_t *parts[4] = {NULL, buf, NULL, buf + 40};
        size_t lens[4] = {0, 40, 0, 60};
        CHECK(eng_xxh64_v(parts, lens, 4, 0) == eng_xxh64(buf, 100, 0),
              "xxh64_v: NULL empty parts");
    }
    CHECK(eng_xxh64_v(NULL, NULL, 0, 0) == eng_xxh64(NULL, 0, 0), "xxh64_v: no parts");
    CHECK(eng_xxh64_v(NULL, NULL, 0, 0) == 0xEF46DB3751D8E999ULL, "xxh64_v: empty reference");
}

static void test_tx_encode_args(void) {
    uint8_t buf[512];
    size_t len = tx_sample(buf, sizeof buf);
    uint32_t bad_lens[3] = {3, 0, 4};
    uint8_t guard[512];
    int64_t r;

    r = eng_tx_encode(1, 2, 3, 4, 0, TX_VERSIONS, TX_PREV, TX_DLENS, TX_STREAMS,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "tx encode n == 0");

    memset(guard, 0xA5, sizeof guard);
    r = eng_tx_encode(1, 2, 3, 4, TX_N, TX_VERSIONS, TX_PREV, TX_DLENS, TX_STREAMS,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, guard, len - 1);
    CHECK_RC(r, ENG_E_ARG, "tx encode out_cap one short");
    CHECK(guard[0] == 0xA5 && guard[len - 1] == 0xA5, "tx encode wrote on ENG_E_ARG");

    r = eng_tx_encode(1, 2, 3, 4, TX_N, TX_VERSIONS, TX_PREV, TX_DLENS, TX_STREAMS,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, guard, len);
    CHECK_RC(r, (int64_t)len, "tx encode out_cap exact");

    r = eng_tx_encode(1, 2, 3, 4, TX_N, TX_VERSIONS, TX_PREV, bad_lens, TX_STREAMS,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "tx encode data_lens do not sum to data_len");

    r = eng_tx_encode(1, 2, 3, 4, TX_N, TX_VERSIONS, TX_PREV, TX_DLENS, TX_STREAMS,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, NULL, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "tx encode out == NULL");

    r = eng_tx_encode(1, 2, 3, 4, TX_N, NULL, TX_PREV, TX_DLENS, TX_STREAMS,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "tx encode versions == NULL");

    r = eng_tx_encode(1, 2, 3, 4, TX_N, TX_VERSIONS, TX_PREV, TX_DLENS, NULL,
                      TX_SL, TX_TYPES, TX_TL, TX_DATA, TX_DL, NULL, 0, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "tx encode streams == NULL with streams_len > 0");
}

/* Copies the sample, applies edit, optionally re-signs, decodes; returns rc. */
typedef void (*tx_edit)(uint8_t *buf, size_t len);

static void ed_tx_magic(uint8_t *b, size_t l) { (void)l; b[3] = 'S'; }
static void ed_tx_version3(uint8_t *b, size_t l) { (void)l; b[4] = 3; }
static void ed_tx_version0(uint8_t *b, size_t l) { (void)l; b[4] = 0; }
static void ed_tx_data_byte(uint8_t *b, size_t l) { b[l - 9] ^= 0x01; }
static void ed_tx_trailer(uint8_t *b, size_t l) { b[l - 1] ^= 0x80; }
static void ed_tx_count0(uint8_t *b, size_t l) { (void)l; put32(b + 40, 0); }
static void ed_tx_count_max(uint8_t *b, size_t l) { (void)l; put32(b + 40, UINT32_MAX); }
static void ed_tx_count_up(uint8_t *b, size_t l) { (void)l; put32(b + 40, 4); }
static void ed_tx_count_down(uint8_t *b, size_t l) { (void)l; put32(b + 40, 2); }
static void ed_tx_sl_up(uint8_t *b, size_t l) { (void)l; put32(b + 44, TX_SL + 1); }
static void ed_tx_sl_down(uint8_t *b, size_t l) { (void)l; put32(b + 44, TX_SL - 1); }
static void ed_tx_dl_max(uint8_t *b, size_t l) { (void)l; put32(b + 52, UINT32_MAX); }
static void ed_tx_dl_down(uint8_t *b, size_t l) { (void)l; put32(b + 52, TX_DL - 1); }
/* streams column starts at 116, types at 128. */
static void ed_tx_s_nul_gone(uint8_t *b, size_t l) { (void)l; b[116 + 5] = 'x'; }
static void ed_tx_t_last(uint8_t *b, size_t l) { (void)l; b[128 + 11] = 'x'; }
static void ed_tx_dlen_up(uint8_t *b, size_t l) { (void)l; put32(b + 104, 4); }
static void ed_tx_dlen_wrap(uint8_t *b, size_t l) {
    /* lens {2^32-1, 1, 8}: sums to 8 mod 2^32 but not as u64 */
    (void)l;
    put32(b + 104, UINT32_MAX);
    put32(b + 108, 1);
    put32(b + 112, 8);
}
static void ed_tx_ver0_first(uint8_t *b, size_t l) { (void)l; put64(b + 56, 0); }
static void ed_tx_ver0_last(uint8_t *b, size_t l) { (void)l; put64(b + 56 + 16, 0); }
/* Several faults at once: the earliest check in the order must win. */
static void ed_tx_names_and_lengths(uint8_t *b, size_t l) {
    ed_tx_s_nul_gone(b, l);
    ed_tx_dlen_up(b, l);
}
static void ed_tx_lengths_and_ver0(uint8_t *b, size_t l) {
    ed_tx_dlen_up(b, l);
    ed_tx_ver0_first(b, l);
}
static void ed_tx_count0_and_sl(uint8_t *b, size_t l) {
    ed_tx_count0(b, l);
    ed_tx_sl_up(b, l);
}
static void ed_tx_magic_and_version(uint8_t *b, size_t l) {
    ed_tx_magic(b, l);
    ed_tx_version3(b, l);
}

static int tx_run_edit(tx_edit ed, int resign) {
    uint8_t buf[512];
    eng_tx_view v;
    size_t len = tx_sample(buf, sizeof buf);
    ed(buf, len);
    if (resign) tx_resign(buf, len);
    return tx_decode_copy(buf, len, &v);
}

/* Decodes the sample encoded with other name columns. */
static int tx_run_names(const char *streams, uint32_t sl, const char *types,
                        uint32_t tl) {
    uint8_t buf[512];
    eng_tx_view v;
    size_t len = tx_sample_with(buf, sizeof buf, (const uint8_t *)streams, sl,
                                (const uint8_t *)types, tl);
    return tx_decode_copy(buf, len, &v);
}

static void test_tx_errors(void) {
    uint8_t buf[512];
    eng_tx_view v, before;
    size_t len = tx_sample(buf, sizeof buf);

    CHECK_RC(eng_tx_decode(buf, 63, &v), ENG_E_TRUNCATED, "tx TRUNCATED (63 bytes)");
    CHECK_RC(eng_tx_decode(NULL, 0, &v), ENG_E_TRUNCATED, "tx TRUNCATED (NULL, 0)");
    CHECK_RC(eng_tx_decode(buf, len, NULL), ENG_E_ARG, "tx decode view == NULL");

    CHECK_RC(tx_run_edit(ed_tx_magic, 1), ENG_E_BAD_MAGIC, "tx BAD_MAGIC");
    CHECK_RC(tx_run_edit(ed_tx_version3, 1), ENG_E_VERSION, "tx VERSION 3");
    CHECK_RC(tx_run_edit(ed_tx_version0, 1), ENG_E_VERSION, "tx VERSION 0");
    CHECK_RC(tx_run_edit(ed_tx_data_byte, 0), ENG_E_CHECKSUM, "tx CHECKSUM (data)");
    CHECK_RC(tx_run_edit(ed_tx_trailer, 0), ENG_E_CHECKSUM, "tx CHECKSUM (trailer)");
    CHECK_RC(tx_run_edit(ed_tx_count0, 1), ENG_E_FIELD, "tx FIELD event_count 0");
    CHECK_RC(tx_run_edit(ed_tx_count_max, 1), ENG_E_OVERRUN, "tx OVERRUN count max");
    CHECK_RC(tx_run_edit(ed_tx_count_up, 1), ENG_E_OVERRUN, "tx OVERRUN count + 1");
    CHECK_RC(tx_run_edit(ed_tx_sl_up, 1), ENG_E_OVERRUN, "tx OVERRUN streams_len + 1");
    CHECK_RC(tx_run_edit(ed_tx_dl_max, 1), ENG_E_OVERRUN, "tx OVERRUN data_len max");
    CHECK_RC(tx_run_edit(ed_tx_count_down, 1), ENG_E_TRAILING, "tx TRAILING count - 1");
    CHECK_RC(tx_run_edit(ed_tx_sl_down, 1), ENG_E_TRAILING, "tx TRAILING streams_len - 1");
    CHECK_RC(tx_run_edit(ed_tx_dl_down, 1), ENG_E_TRAILING, "tx TRAILING data_len - 1");
    CHECK_RC(tx_run_edit(ed_tx_s_nul_gone, 1), ENG_E_NAMES, "tx NAMES missing NUL");
    CHECK_RC(tx_run_edit(ed_tx_t_last, 1), ENG_E_NAMES, "tx NAMES types last byte");
    CHECK_RC(tx_run_edit(ed_tx_dlen_up, 1), ENG_E_LENGTHS, "tx LENGTHS");
    CHECK_RC(tx_run_edit(ed_tx_dlen_wrap, 1), ENG_E_LENGTHS, "tx LENGTHS u32 wrap");
    CHECK_RC(tx_run_edit(ed_tx_ver0_first, 1), ENG_E_FIELD, "tx FIELD version[0] 0");
    CHECK_RC(tx_run_edit(ed_tx_ver0_last, 1), ENG_E_FIELD, "tx FIELD version[2] 0");

    /* Check order. */
    CHECK_RC(eng_tx_decode((const uint8_t *)"XXXX", 4, &v), ENG_E_TRUNCATED,
             "tx order: TRUNCATED before BAD_MAGIC");
    CHECK_RC(tx_run_edit(ed_tx_magic_and_version, 0), ENG_E_BAD_MAGIC,
             "tx order: BAD_MAGIC before VERSION");
    CHECK_RC(tx_run_edit(ed_tx_version3, 0), ENG_E_VERSION,
             "tx order: VERSION before CHECKSUM");
    CHECK_RC(tx_run_edit(ed_tx_count0, 0), ENG_E_CHECKSUM,
             "tx order: CHECKSUM before FIELD");
    CHECK_RC(tx_run_edit(ed_tx_sl_up, 0), ENG_E_CHECKSUM,
             "tx order: CHECKSUM before OVERRUN");
    CHECK_RC(tx_run_edit(ed_tx_count0_and_sl, 1), ENG_E_FIELD,
             "tx order: FIELD (count) before OVERRUN");
    CHECK_RC(tx_run_edit(ed_tx_names_and_lengths, 1), ENG_E_NAMES,
             "tx order: NAMES before LENGTHS");
    CHECK_RC(tx_run_edit(ed_tx_lengths_and_ver0, 1), ENG_E_LENGTHS,
             "tx order: LENGTHS before FIELD (version)");

    /* Name-column shapes (the encoder copies names unchecked). Each literal's
     * own terminating NUL is the column's last byte. */
#define NAMES_RC(s, t) tx_run_names((s), (uint32_t)sizeof(s), (t), (uint32_t)sizeof(t))
    CHECK_RC(NAMES_RC("alpha\0b\0ccc", "T1\0T2\0Type3"), ENG_OK,
             "tx names: valid");
    CHECK_RC(NAMES_RC("\0lpha\0b\0ccc", "T1\0T2\0Type3"), ENG_E_NAMES,
             "tx names: empty first name");
    CHECK_RC(NAMES_RC("alpha\0\0\0ccc", "T1\0T2\0Type3"), ENG_E_NAMES,
             "tx names: empty middle name");
    CHECK_RC(NAMES_RC("alpha\0b\0cc\0", "T1\0T2\0Type3"), ENG_E_NAMES,
             "tx names: too many NULs");
    CHECK_RC(NAMES_RC("alpha\0bcccc", "T1\0T2\0Type3"), ENG_E_NAMES,
             "tx names: too few NULs");
    CHECK_RC(tx_run_names("a\0b\0c\0ddddd", 11, "T1\0T2\0Type3", 12), ENG_E_NAMES,
             "tx names: n NULs but last byte not NUL");
    CHECK_RC(NAMES_RC("alphabetccc", "T1\0T2\0Type3"), ENG_E_NAMES,
             "tx names: only the final NUL");
    CHECK_RC(NAMES_RC("alpha\0b\0ccc", "T1\0\0Type345"), ENG_E_NAMES,
             "tx names: empty type name");
    CHECK_RC(tx_run_names("", 0, "T1\0T2\0Type3", 12), ENG_E_NAMES,
             "tx names: empty (0-byte) streams column");
    CHECK_RC(NAMES_RC("", "T1\0T2\0Type3"), ENG_E_NAMES,
             "tx names: streams column of one NUL");
    CHECK_RC(NAMES_RC("a\0b\0c", "T1\0T2\0Type3\0"), ENG_E_NAMES,
             "tx names: types NUL after last name");
    CHECK_RC(NAMES_RC("a\0b\0c", "T1\0T2\0Type3"), ENG_OK,
             "tx names: one-byte names");
#undef NAMES_RC

    /* Extension by one byte before the trailer, re-signed: TRAILING. */
    {
        uint8_t ext[513];
        memcpy(ext, buf, len - 8);
        ext[len - 8] = 0;
        tx_resign(ext, len + 1);
        CHECK_RC(tx_decode_copy(ext, len + 1, &v), ENG_E_TRAILING, "tx TRAILING extension");
    }

    /* A failed decode leaves *view untouched. */
    memset(&before, 0x5A, sizeof before);
    memcpy(&v, &before, sizeof v);
    CHECK(tx_run_edit(ed_tx_dlen_up, 1) == ENG_E_LENGTHS, "tx LENGTHS again");
    buf[0] = 'X';
    CHECK_RC(eng_tx_decode(buf, len, &v), ENG_E_BAD_MAGIC, "tx BAD_MAGIC again");
    CHECK(memcmp(&v, &before, sizeof v) == 0, "tx view untouched on failure");
}

/* Finds name (NUL-terminated literal) in an exact-size copy of buf[0..len). */
static int64_t find_copy(const uint8_t *buf, size_t len, const char *name, eng_tx_view *v,
                         eng_stream_hit *h, uint32_t cap) {
    uint8_t *c = dup_exact(buf, len);
    int64_t r = eng_tx_find_stream(c, len, (const uint8_t *)name, strlen(name), v, h, cap);
    free(c);
    return r;
}

/* The finder on a record whose name columns are given (n = 3 names each). */
static int64_t find_in_names(const char *streams, uint32_t sl, const char *types, uint32_t tl,
                             const char *name) {
    uint8_t buf[512];
    eng_tx_view v;
    eng_stream_hit h[4];
    size_t len = tx_sample_with(buf, sizeof buf, (const uint8_t *)streams, sl,
                                (const uint8_t *)types, tl);
    return find_copy(buf, len, name, &v, h, 4);
}

static void test_tx_find_stream(void) {
    uint8_t buf[512];
    eng_tx_view v, d, before;
    eng_stream_hit h[4];
    size_t len = tx_sample(buf, sizeof buf);
    uint64_t vers[4] = {1, 2, 3, 9}, prev[4] = {0, 5, 5, 8};
    uint32_t dl[4] = {2, 0, 3, 1};
    int64_t r;

    CHECK_RC(eng_tx_decode(buf, len, &d), ENG_OK, "find: sample decodes");
    /* Each of the three events of the sample (streams "alpha", "b", "ccc"). */
    CHECK_RC(find_copy(buf, len, "alpha", &v, h, 4), 1, "find alpha");
    CHECK(v.tx_id == d.tx_id && v.epoch == d.epoch && v.ts_ns == d.ts_ns &&
              v.first_position == d.first_position && v.event_count == d.event_count &&
              v.streams_len == d.streams_len && v.types_len == d.types_len &&
              v.data_len == d.data_len && v.format_version == d.format_version &&
              v.flags == d.flags && v.versions_off == d.versions_off &&
              v.prev_off == d.prev_off && v.data_lens_off == d.data_lens_off &&
              v.streams_off == d.streams_off && v.types_off == d.types_off &&
              v.data_off == d.data_off, "find fills the view as decode does");
    CHECK(h[0].index == 0 && h[0].version == 1 && h[0].prev_tx == 0, "find alpha: index");
    CHECK(h[0].type_off == d.types_off && h[0].type_len == 2, "find alpha: type T1");
    CHECK(h[0].data_off == d.data_off && h[0].data_len == 3, "find alpha: data abc");
    CHECK_RC(find_copy(buf, len, "b", &v, h, 4), 1, "find b");
    CHECK(h[0].index == 1 && h[0].version == 2 && h[0].prev_tx == 10, "find b: index");
    CHECK(h[0].type_off == d.types_off + 3 && h[0].type_len == 2, "find b: type T2");
    CHECK(h[0].data_off == d.data_off + 3 && h[0].data_len == 0, "find b: empty data");
    CHECK_RC(find_copy(buf, len, "ccc", &v, h, 4), 1, "find ccc");
    CHECK(h[0].index == 2 && h[0].version == 7 && h[0].prev_tx == 20, "find ccc: index");
    CHECK(h[0].type_off == d.types_off + 6 && h[0].type_len == 5, "find ccc: type Type3");
    CHECK(h[0].data_off == d.data_off + 3 && h[0].data_len == 5, "find ccc: data defgh");
    CHECK(memcmp(buf + h[0].data_off, "defgh", 5) == 0, "find ccc: the payload bytes");

    /* Exact matches only: no prefix, extension, or name with a NUL matches. */
    CHECK_RC(find_copy(buf, len, "alph", &v, h, 4), 0, "find: a prefix is no match");
    CHECK_RC(find_copy(buf, len, "alphaa", &v, h, 4), 0, "find: an extension is no match");
    CHECK_RC(find_copy(buf, len, "cc", &v, h, 4), 0, "find: a suffix is no match");
    CHECK_RC(find_copy(buf, len, "T1", &v, h, 4), 0, "find: a type name is no stream");
    CHECK_RC(eng_tx_find_stream(buf, len, (const uint8_t *)"b\0ccc", 5, &v, h, 4), 0,
             "find: a name holding a NUL matches nothing");
    CHECK_RC(eng_tx_find_stream(buf, len, NULL, 0, &v, h, 4), 0, "find: the empty name");
    CHECK_RC(eng_tx_find_stream(buf, len, (const uint8_t *)"alpha", 5, &v, NULL, 0), 1,
             "find: cap 0 counts without writing");

    /* Arguments. */
    CHECK_RC(eng_tx_find_stream(buf, len, (const uint8_t *)"b", 1, NULL, h, 4), ENG_E_ARG,
             "find: view NULL");
    CHECK_RC(eng_tx_find_stream(NULL, 5, (const uint8_t *)"b", 1, &v, h, 4), ENG_E_ARG,
             "find: buf NULL with len");
    CHECK_RC(eng_tx_find_stream(buf, len, NULL, 1, &v, h, 4), ENG_E_ARG,
             "find: name NULL with name_len");
    CHECK_RC(eng_tx_find_stream(buf, len, (const uint8_t *)"b", 1, &v, NULL, 1), ENG_E_ARG,
             "find: hits NULL with cap");
    CHECK_RC(eng_tx_find_stream(NULL, 0, (const uint8_t *)"b", 1, &v, h, 4), ENG_E_TRUNCATED,
             "find: (NULL, 0) is TRUNCATED");

    /* Many events of one stream: all counted, the first cap written, in order. */
    r = eng_tx_encode(5, 1, 2, 100, 4, vers, prev, dl, (const uint8_t *)"s\0t\0s\0s", 8,
                      (const uint8_t *)"x\0yy\0z\0w", 9, (const uint8_t *)"abcdef", 6, NULL, 0, buf,
                      sizeof buf);
    CHECK(r > 0, "find: encode 4 events");
    len = (size_t)r;
    CHECK_RC(find_copy(buf, len, "s", &v, h, 2), 3, "find: 3 hits, cap 2");
    CHECK(h[0].index == 0 && h[1].index == 2, "find: first two hits written");
    CHECK_RC(find_copy(buf, len, "s", &v, h, 4), 3, "find: 3 hits, cap 4");
    CHECK(h[2].index == 3 && h[2].version == 9 && h[2].prev_tx == 8, "find: third hit");
    CHECK(h[1].type_len == 1 && memcmp(buf + h[1].type_off, "z", 1) == 0, "find: z");
    CHECK(h[2].type_len == 1 && memcmp(buf + h[2].type_off, "w", 1) == 0, "find: w");
    CHECK(h[1].data_off == v.data_off + 2 && h[1].data_len == 3, "find: data of hit 2");
    CHECK(h[2].data_off == v.data_off + 5 && h[2].data_len == 1, "find: data of hit 3");
    CHECK_RC(find_copy(buf, len, "t", &v, h, 4), 1, "find t");
    CHECK(h[0].type_len == 2 && h[0].data_len == 0, "find t: type yy, no data");

    /* UTF-8: both columns are checked (decode leaves that to Python). */
#define FIND_RC(s, t, name) \
    find_in_names((s), (uint32_t)sizeof(s), (t), (uint32_t)sizeof(t), (name))
    CHECK_RC(FIND_RC("\xc3\xbc" "n\0b\0c", "T1\0T2\0T3", "b"), 1, "utf8: u-umlaut");
    CHECK_RC(FIND_RC("\xf0\x9f\x98\x80\0b\0c", "T1\0T2\0T3", "b"), 1, "utf8: 4 bytes");
    CHECK_RC(FIND_RC("\xef\xbf\xbf\0b\0\xf4\x8f\xbf\xbf", "T1\0T2\0T3", "b"), 1,
             "utf8: U+FFFF and U+10FFFF");
    CHECK_RC(FIND_RC("\xc3\x28\0b\0c", "T1\0T2\0T3", "b"), ENG_E_NAMES, "utf8: bad 2nd byte");
    CHECK_RC(FIND_RC("\xc0\xaf\0b\0c", "T1\0T2\0T3", "b"), ENG_E_NAMES, "utf8: overlong 2");
    CHECK_RC(FIND_RC("\xe0\x80\xaf\0b\0c", "T1\0T2\0T3", "b"), ENG_E_NAMES,
             "utf8: overlong 3");
    CHECK_RC(FIND_RC("\xf0\x80\x80\xaf\0b\0c", "T1\0T2\0T3", "b"), ENG_E_NAMES,
             "utf8: overlong 4");
    CHECK_RC(FIND_RC("a\0b\0c", "\xed\xa0\x80\0T2\0T3", "b"), ENG_E_NAMES,
             "utf8: a surrogate in the types");
    CHECK_RC(FIND_RC("a\0b\0\xf4\x90\x80\x80", "T1\0T2\0T3", "b"), ENG_E_NAMES,
             "utf8: past U+10FFFF");
    CHECK_RC(FIND_RC("a\0b\0\xe2\x82", "T1\0T2\0T3", "b"), ENG_E_NAMES,
             "utf8: cut before the NUL");
    CHECK_RC(FIND_RC("a\0b\0\x80", "T1\0T2\0T3", "b"), ENG_E_NAMES, "utf8: lone continuation");
    CHECK_RC(FIND_RC("a\0b\0\xff", "T1\0T2\0T3", "b"), ENG_E_NAMES, "utf8: byte FF");
    CHECK_RC(FIND_RC("a\0b\0c", "T1\0T2\0T\xf5\x80\x80\x80", "b"), ENG_E_NAMES,
             "utf8: lead F5");
    CHECK_RC(FIND_RC("abcdefghij\xc3\0b\0c", "T1\0T2\0T3", "b"), ENG_E_NAMES,
             "utf8: cut after 8 ASCII bytes");
    len = tx_sample_with(buf, sizeof buf, (const uint8_t *)"a\0b\0\xc3", 6,
                         (const uint8_t *)"T1\0T2\0T3", 9);
    CHECK_RC(eng_tx_decode(buf, len, &v), ENG_OK, "utf8: decode itself does not look at it");
#undef FIND_RC

    /* A failed find leaves *view untouched. */
    len = tx_sample(buf, sizeof buf);
    buf[len - 1] ^= 1;
    memset(&before, 0x5A, sizeof before);
    memcpy(&v, &before, sizeof v);
    CHECK_RC(eng_tx_find_stream(buf, len, (const uint8_t *)"b", 1, &v, h, 4), ENG_E_CHECKSUM,
             "find: CHECKSUM");
    CHECK(memcmp(&v, &before, sizeof v) == 0, "find: view untouched on failure");
}

static void test_tx_truncation(void) {
    uint8_t buf[512];
    eng_tx_view v;
    size_t len = tx_sample(buf, sizeof buf);
    size_t l;
    int bad_plain = 0, bad_resigned = 0;

    for (l = 0; l < len; l++) {
        int rc = tx_decode_copy(buf, l, &v);
        if (rc == ENG_OK || (l < 64 && rc != ENG_E_TRUNCATED)) bad_plain++;
        if (l >= 64) {
            /* Re-sign the truncated prefix so the structural checks run. */
            uint8_t *c = dup_exact(buf, l);
            tx_resign(c, l);
            rc = eng_tx_decode(c, l, &v);
            if (rc != ENG_E_OVERRUN) bad_resigned++;
            free(c);
        }
    }
    CHECK(bad_plain == 0, "tx truncation: %d lengths decoded or mis-coded", bad_plain);
    CHECK(bad_resigned == 0, "tx re-signed truncation: %d lengths not OVERRUN",
          bad_resigned);
}

/* ------------------------------------------------------- Snapshot block --- */

/* The sample block: 4 entries, entries 1 and 2 are None. */
static const uint64_t BK_VERSIONS[4] = {1, 3, 9, UINT64_MAX};
static const uint64_t BK_LAST[4] = {5, 6, 7, 8};
static const uint32_t BK_VLENS[4] = {2, 0, 0, 3};
static const uint32_t BK_NONE[2] = {1, 2};
static const uint8_t BK_NAMES[] = "k1\0key2\0k3\0z"; /* 13 bytes incl. last NUL */
static const uint8_t BK_VALUES[] = "hiabc";
#define BK_N 4u
#define BK_M 2u
#define BK_NL 13u
#define BK_VL 5u
/* Offsets: versions 24, last_tx 56, value_lens 88, none_idx 104, names 112,
 * values 125, trailer 130, block_len 138. */
#define BK_LEN 138u

static size_t bk_sample(uint8_t *out, size_t cap) {
    int64_t r = eng_block_encode(BK_N, BK_VERSIONS, BK_LAST, BK_VLENS, BK_M, BK_NONE,
                                 BK_NAMES, BK_NL, BK_VALUES, BK_VL, out, cap);
    if (r <= 0) {
        fprintf(stderr, "sample block encode failed: %lld\n", (long long)r);
        exit(2);
    }
    return (size_t)r;
}

static void bk_resign(uint8_t *b, size_t block_len) {
    put64(b + block_len - 8, eng_xxh64(b, block_len - 8, 0));
}

static int bk_decode_copy(const uint8_t *buf, size_t len, eng_block_view *v) {
    uint8_t *c = dup_exact(buf, len);
    int rc = eng_block_decode(c, len, v);
    free(c);
    return rc;
}

static void test_block_roundtrip(void) {
    uint8_t buf[1024];
    eng_block_view v;
    size_t len = bk_sample(buf, sizeof buf);
    uint32_t i;

    CHECK(len == BK_LEN, "block size: got %zu want %u", len, BK_LEN);
    CHECK(eng_block_encoded_size(4, 2, 13, 5) == BK_LEN, "eng_block_encoded_size");
    CHECK(memcmp(buf, "SBLK", 4) == 0, "block magic");
    CHECK(get32(buf + 20) == 0, "block reserved");

    CHECK_RC(bk_decode_copy(buf, len, &v), ENG_OK, "block decode sample");
    CHECK(v.entry_count == 4 && v.none_count == 2 && v.names_len == 13 &&
              v.values_len == 5, "block sizes");
    CHECK(v.versions_off == 24 && v.last_tx_off == 56 && v.value_lens_off == 88 &&
              v.none_idx_off == 104 && v.names_off == 112 && v.values_off == 125 &&
              v.block_len == BK_LEN, "block offsets");
    for (i = 0; i < 4; i++) {
        CHECK(get64(buf + v.versions_off + 8 * i) == BK_VERSIONS[i], "block version %u", i);
        CHECK(get64(buf + v.last_tx_off + 8 * i) == BK_LAST[i], "block last_tx %u", i);
        CHECK(get32(buf + v.value_lens_off + 4 * i) == BK_VLENS[i], "block vlen %u", i);
    }
    CHECK(get32(buf + v.none_idx_off) == 1 && get32(buf + v.none_idx_off + 4) == 2,
          "block none_idx");
    CHECK(memcmp(buf + v.names_off, BK_NAMES, 13) == 0, "block names column");
    CHECK(memcmp(buf + v.values_off, BK_VALUES, 5) == 0, "block values column");

    /* Three blocks back to back: step through them with block_len. */
    {
        uint64_t ver = 1, last = 1;
        uint32_t vl = 0, none = 0;
        size_t off = len, count = 0;
        int64_t r = eng_block_encode(1, &ver, &last, &vl, 1, &none,
                                     (const uint8_t *)"x", 2, NULL, 0,
                                     buf + off, sizeof buf - off);
        CHECK_RC(r, 24 + 20 + 4 + 2 + 8, "block encode single None entry");
        off += (size_t)r;
        memcpy(buf + off, buf, len);
        off += len;
        {
            uint8_t *c = dup_exact(buf, off);
            size_t at = 0;
            while (at < off) {
                int rc = eng_block_decode(c + at, off - at, &v);
                CHECK_RC(rc, ENG_OK, "block chain decode");
                if (rc != ENG_OK) break;
                at += v.block_len;
                count++;
            }
            free(c);
        }
        CHECK(count == 3, "block chain: %zu blocks", count);
    }

    /* No None entries, empty values. */
    {
        uint64_t vers[2] = {1, 2}, last[2] = {3, 4};
        uint32_t vls[2] = {0, 0};
        int64_t r = eng_block_encode(2, vers, last, vls, 0, NULL,
                                     (const uint8_t *)"a\0b", 4, NULL, 0, buf, sizeof buf);
        CHECK_RC(r, 24 + 40 + 4 + 8, "block encode m == 0");
        CHECK_RC(bk_decode_copy(buf, (size_t)r, &v), ENG_OK, "block decode m == 0");
        CHECK(v.none_count == 0 && v.none_idx_off == v.names_off, "block m == 0 view");
    }
}

static void test_block_encode_args(void) {
    uint8_t buf[1024], guard[256];
    uint32_t none_bad_order[2] = {2, 1}, none_dup[2] = {1, 1}, none_range[2] = {1, 4};
    uint32_t none_nonzero[2] = {0, 1}, vlens_bad[4] = {2, 0, 0, 4};
    int64_t r;

#define BK_ENC(n, vl, m, none, cap_buf, cap)                                  \
    eng_block_encode((n), BK_VERSIONS, BK_LAST, (vl), (m), (none), BK_NAMES,  \
                     BK_NL, BK_VALUES, BK_VL, (cap_buf), (cap))
    r = BK_ENC(0, BK_VLENS, 0, NULL, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode n == 0");
    r = BK_ENC(1, BK_VLENS, 2, BK_NONE, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode m > n");
    memset(guard, 0xA5, sizeof guard);
    r = BK_ENC(BK_N, BK_VLENS, BK_M, BK_NONE, guard, BK_LEN - 1);
    CHECK_RC(r, ENG_E_ARG, "block encode out_cap one short");
    CHECK(guard[0] == 0xA5 && guard[BK_LEN - 1] == 0xA5, "block encode wrote on ENG_E_ARG");
    r = BK_ENC(BK_N, BK_VLENS, BK_M, BK_NONE, guard, BK_LEN);
    CHECK_RC(r, BK_LEN, "block encode out_cap exact");
    r = BK_ENC(BK_N, vlens_bad, BK_M, BK_NONE, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode value_lens do not sum");
    r = BK_ENC(BK_N, BK_VLENS, 2, none_bad_order, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode none_idx decreasing");
    r = BK_ENC(BK_N, BK_VLENS, 2, none_dup, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode none_idx repeated");
    r = BK_ENC(BK_N, BK_VLENS, 2, none_range, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode none_idx >= n");
    r = BK_ENC(BK_N, BK_VLENS, 2, none_nonzero, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode none_idx at non-zero length");
    r = BK_ENC(BK_N, BK_VLENS, 2, NULL, buf, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode none_idx NULL with m > 0");
    r = BK_ENC(BK_N, BK_VLENS, BK_M, BK_NONE, NULL, sizeof buf);
    CHECK_RC(r, ENG_E_ARG, "block encode out NULL");
#undef BK_ENC
}

typedef void (*bk_edit)(uint8_t *b);

static void ed_bk_magic(uint8_t *b) { b[0] = 's'; }
static void ed_bk_n0(uint8_t *b) { put32(b + 4, 0); }
static void ed_bk_m_gt_n(uint8_t *b) { put32(b + 8, 5); }
static void ed_bk_reserved(uint8_t *b) { b[23] = 1; }
static void ed_bk_nl_up(uint8_t *b) { put32(b + 12, BK_NL + 1); }
static void ed_bk_vl_max(uint8_t *b) { put32(b + 16, UINT32_MAX); }
static void ed_bk_n_max(uint8_t *b) { put32(b + 4, UINT32_MAX); put32(b + 8, UINT32_MAX); }
static void ed_bk_value_byte(uint8_t *b) { b[125] ^= 0x20; }
static void ed_bk_ver0(uint8_t *b) { put64(b + 24 + 8, 0); }
static void ed_bk_last0(uint8_t *b) { put64(b + 56 + 24, 0); }
static void ed_bk_none_order(uint8_t *b) { put32(b + 104, 2); put32(b + 108, 1); }
static void ed_bk_none_dup(uint8_t *b) { put32(b + 104, 2); }
static void ed_bk_none_range(uint8_t *b) { put32(b + 108, 4); }
static void ed_bk_none_huge(uint8_t *b) { put32(b + 108, UINT32_MAX); }
static void ed_bk_none_nonzero(uint8_t *b) { put32(b + 104, 0); }
static void ed_bk_name_nul(uint8_t *b) { b[112 + 2] = 'x'; }
static void ed_bk_name_empty(uint8_t *b) { b[112] = 0; b[112 + 1] = 0; b[112 + 2] = 'q'; }
static void ed_bk_name_last(uint8_t *b) { b[112 + 12] = 'x'; }
static void ed_bk_vlens(uint8_t *b) { put32(b + 88, 1); }
static void ed_bk_ver0_and_names(uint8_t *b) { ed_bk_ver0(b); ed_bk_name_nul(b); }
static void ed_bk_names_and_lens(uint8_t *b) { ed_bk_name_nul(b); ed_bk_vlens(b); }

/* Edits the sample, optionally re-signs it at its (original) end, decodes. */
static int bk_run_edit(bk_edit ed, int resign) {
    uint8_t buf[1024];
    eng_block_view v;
    size_t len = bk_sample(buf, sizeof buf);
    ed(buf);
    if (resign) bk_resign(buf, len);
    return bk_decode_copy(buf, len, &v);
}

static void test_block_errors(void) {
    uint8_t buf[1024];
    eng_block_view v, before;
    size_t len = bk_sample(buf, sizeof buf);

    CHECK_RC(eng_block_decode(buf, 31, &v), ENG_E_TRUNCATED, "block TRUNCATED (31)");
    CHECK_RC(eng_block_decode(NULL, 0, &v), ENG_E_TRUNCATED, "block TRUNCATED (NULL, 0)");
    CHECK_RC(eng_block_decode(buf, len, NULL), ENG_E_ARG, "block decode view NULL");

    CHECK_RC(bk_run_edit(ed_bk_magic, 1), ENG_E_BAD_MAGIC, "block BAD_MAGIC");
    CHECK_RC(bk_run_edit(ed_bk_n0, 0), ENG_E_FIELD, "block FIELD n == 0");
    CHECK_RC(bk_run_edit(ed_bk_m_gt_n, 0), ENG_E_FIELD, "block FIELD m > n");
    CHECK_RC(bk_run_edit(ed_bk_reserved, 0), ENG_E_FIELD, "block FIELD reserved");
    CHECK_RC(bk_run_edit(ed_bk_nl_up, 0), ENG_E_OVERRUN, "block OVERRUN names_len + 1");
    CHECK_RC(bk_run_edit(ed_bk_vl_max, 0), ENG_E_OVERRUN, "block OVERRUN values_len max");
    CHECK_RC(bk_run_edit(ed_bk_n_max, 0), ENG_E_OVERRUN, "block OVERRUN n, m max");
    CHECK_RC(bk_run_edit(ed_bk_value_byte, 0), ENG_E_CHECKSUM, "block CHECKSUM");
    CHECK_RC(bk_run_edit(ed_bk_ver0, 1), ENG_E_FIELD, "block FIELD version 0");
    CHECK_RC(bk_run_edit(ed_bk_last0, 1), ENG_E_FIELD, "block FIELD last_tx 0");
    CHECK_RC(bk_run_edit(ed_bk_none_order, 1), ENG_E_FIELD, "block FIELD none_idx order");
    CHECK_RC(bk_run_edit(ed_bk_none_dup, 1), ENG_E_FIELD, "block FIELD none_idx repeat");
    CHECK_RC(bk_run_edit(ed_bk_none_range, 1), ENG_E_FIELD, "block FIELD none_idx == n");
    CHECK_RC(bk_run_edit(ed_bk_none_huge, 1), ENG_E_FIELD, "block FIELD none_idx max");
    CHECK_RC(bk_run_edit(ed_bk_none_nonzero, 1), ENG_E_FIELD,
             "block FIELD none_idx at non-zero length");
    CHECK_RC(bk_run_edit(ed_bk_name_nul, 1), ENG_E_NAMES, "block NAMES missing NUL");
    CHECK_RC(bk_run_edit(ed_bk_name_empty, 1), ENG_E_NAMES, "block NAMES empty name");
    CHECK_RC(bk_run_edit(ed_bk_name_last, 1), ENG_E_NAMES, "block NAMES last byte");
    CHECK_RC(bk_run_edit(ed_bk_vlens, 1), ENG_E_LENGTHS, "block LENGTHS");

    /* Check order. */
    CHECK_RC(bk_run_edit(ed_bk_n0, 1), ENG_E_FIELD, "block order: n == 0 re-signed");
    CHECK_RC(bk_run_edit(ed_bk_ver0, 0), ENG_E_CHECKSUM,
             "block order: CHECKSUM before FIELD (columns)");
    CHECK_RC(bk_run_edit(ed_bk_ver0_and_names, 1), ENG_E_FIELD,
             "block order: FIELD before NAMES");
    CHECK_RC(bk_run_edit(ed_bk_names_and_lens, 1), ENG_E_NAMES,
             "block order: NAMES before LENGTHS");

    /* Bytes after the block are another block's business. */
    {
        uint8_t ext[1024];
        memcpy(ext, buf, len);
        memset(ext + len, 0xEE, 7);
        CHECK_RC(bk_decode_copy(ext, len + 7, &v), ENG_OK, "block followed by bytes");
        CHECK(v.block_len == len, "block_len with following bytes");
    }

    memset(&before, 0x5A, sizeof before);
    memcpy(&v, &before, sizeof v);
    buf[5] ^= 1;
    CHECK(eng_block_decode(buf, len, &v) != ENG_OK, "block broken count");
    CHECK(memcmp(&v, &before, sizeof v) == 0, "block view untouched on failure");
}

static void test_block_truncation(void) {
    uint8_t buf[1024];
    eng_block_view v;
    size_t len = bk_sample(buf, sizeof buf);
    size_t l;
    int bad = 0;

    for (l = 0; l < len; l++) {
        int rc = bk_decode_copy(buf, l, &v);
        int want = l < 32 ? ENG_E_TRUNCATED : ENG_E_OVERRUN;
        if (rc != want) {
            bad++;
            fprintf(stderr, "block truncated to %zu: rc %d want %d\n", l, rc, want);
        }
    }
    CHECK(bad == 0, "block truncation: %d lengths mis-coded", bad);
}

/* -------------------------------------------------------- State index --- */

/* One value in a test table: p[0..len), or None when p is NULL. */
typedef struct {
    const char *p;
    uint32_t len;
} ix_val;
#define IV(s) {(s), (uint32_t)(sizeof(s) - 1)}
#define IV_NONE {NULL, 0}

/* The index's expected state for one name. */
typedef struct {
    const char *name;
    uint64_t version, last_tx;
    ix_val value;
} ix_want;

/* Encodes one block of n entries (values[i].p NULL: None) into out; returns
 * its size. Exits on encoder failure (a test bug). */
static size_t ix_block(uint8_t *out, size_t cap, uint32_t n, const char *const *names,
                       const ix_val *values, const uint64_t *vers, const uint64_t *last) {
    static uint8_t ncol[8192], vcol[8192];
    uint32_t vlens[64], none[64], i, m = 0, nl = 0, vl = 0;
    int64_t r;
    if (n > 64) exit(2);
    for (i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        memcpy(ncol + nl, names[i], l + 1);
        nl += (uint32_t)l + 1;
        if (values[i].p == NULL) {
            vlens[i] = 0;
            none[m++] = i;
        } else {
            vlens[i] = values[i].len;
            memcpy(vcol + vl, values[i].p, values[i].len);
            vl += values[i].len;
        }
    }
    r = eng_block_encode(n, vers, last, vlens, m, none, ncol, nl, vcol, vl, out, cap);
    if (r <= 0) {
        fprintf(stderr, "index test block encode failed: %lld\n", (long long)r);
        exit(2);
    }
    return (size_t)r;
}

/* Encodes one record of n events (prev_tx all 0) into out; returns its size. */
static size_t ix_tx(uint8_t *out, size_t cap, uint64_t tx_id, uint32_t n,
                    const char *const *streams, const char *const *types,
                    const ix_val *data, const uint64_t *vers) {
    static uint8_t scol[8192], tcol[8192], dcol[8192];
    uint64_t prev[64] = {0};
    uint32_t dlens[64], i, sl = 0, tl = 0, dl = 0;
    int64_t r;
    if (n > 64) exit(2);
    for (i = 0; i < n; i++) {
        size_t a = strlen(streams[i]), b = strlen(types[i]);
        memcpy(scol + sl, streams[i], a + 1);
        sl += (uint32_t)a + 1;
        memcpy(tcol + tl, types[i], b + 1);
        tl += (uint32_t)b + 1;
        dlens[i] = data[i].len;
        if (data[i].len) memcpy(dcol + dl, data[i].p, data[i].len);
        dl += data[i].len;
    }
    r = eng_tx_encode(tx_id, 7, 8, 9, n, vers, prev, dlens, scol, sl, tcol, tl, dcol, dl, NULL, 0,
                      out, cap);
    if (r <= 0) {
        fprintf(stderr, "index test tx encode failed: %lld\n", (long long)r);
        exit(2);
    }
    return (size_t)r;
}

/* out = prefix (0 or 1 char) + two decimal digits of i % 100 + NUL (at most 4 bytes). */
static void ix_name2(char *out, const char *prefix, unsigned i) {
    size_t k = strlen(prefix);
    memcpy(out, prefix, k);
    out[k] = (char)('0' + (i / 10) % 10);
    out[k + 1] = (char)('0' + i % 10);
    out[k + 2] = 0;
}

static uint8_t *ix_zeroed(uint64_t cap) {
    uint8_t *p = (uint8_t *)calloc((size_t)cap, sizeof(eng_slot));
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

#define IX_ALLOC(cap) ((eng_slot *)ix_zeroed(cap))

/* Checks the entry of w->name: version, last_tx, value bytes, None encoding. */
static void ix_expect(const eng_slot *slots, uint64_t cap, const ix_want *w,
                      const char *what) {
    uint32_t nl = (uint32_t)strlen(w->name);
    int64_t i = eng_index_find(slots, cap, (const uint8_t *)w->name, nl);
    const eng_slot *s;
    CHECK(i >= 0 && (uint64_t)i < cap, "%s: find(\"%.40s\") = %lld", what, w->name,
          (long long)i);
    if (i < 0 || (uint64_t)i >= cap) return;
    s = &slots[i];
    CHECK(s->hash != 0 && s->name_len == nl && memcmp(s->name, w->name, nl) == 0,
          "%s: slot name of \"%.40s\"", what, w->name);
    CHECK(s->version == w->version, "%s: \"%.40s\" version %llu want %llu", what, w->name,
          (unsigned long long)s->version, (unsigned long long)w->version);
    CHECK(s->last_tx == w->last_tx, "%s: \"%.40s\" last_tx %llu want %llu", what, w->name,
          (unsigned long long)s->last_tx, (unsigned long long)w->last_tx);
    if (w->value.p == NULL) {
        CHECK(s->value == NULL && s->value_len == ENG_VALUE_NONE,
              "%s: \"%.40s\" should be None (value %p, len %u)", what, w->name,
              (const void *)s->value, s->value_len);
    } else {
        CHECK(s->value != NULL && s->value_len == w->value.len &&
                  (w->value.len == 0 || memcmp(s->value, w->value.p, w->value.len) == 0),
              "%s: \"%.40s\" value (len %u want %u)", what, w->name, s->value_len,
              w->value.len);
    }
}

/* 1 if p[0..n) lies inside one of the k buffers. */
static int ix_in(const uint8_t *p, uint64_t n, const uint8_t *const *bufs,
                 const size_t *lens, int k) {
    int j;
    for (j = 0; j < k; j++) {
        uintptr_t lo = (uintptr_t)bufs[j], hi = lo + lens[j], at = (uintptr_t)p;
        if (at >= lo && at <= hi && n <= hi - at) return 1;
    }
    return 0;
}

/* Whole-table invariants: occupied slots == count, names and values borrowed
 * from the given buffers, None encoding, find(name) returns the slot. Returns
 * the number of violations (each printed). */
static int ix_consistent(const eng_slot *slots, uint64_t cap, uint64_t count,
                         const uint8_t *const *bufs, const size_t *lens, int k) {
    uint64_t i, used = 0;
    int bad = 0;
    for (i = 0; i < cap; i++) {
        const eng_slot *s = &slots[i];
        if (s->hash == 0) continue;
        used++;
        if (s->name_len == 0 || !ix_in(s->name, s->name_len + 1ULL, bufs, lens, k) ||
            s->name[s->name_len] != 0 || memchr(s->name, 0, s->name_len) != NULL) {
            fprintf(stderr, "index slot %llu: bad name\n", (unsigned long long)i);
            bad++;
            continue;
        }
        if ((s->value == NULL) != (s->value_len == ENG_VALUE_NONE) ||
            (s->value != NULL && !ix_in(s->value, s->value_len, bufs, lens, k))) {
            fprintf(stderr, "index slot %llu: bad value\n", (unsigned long long)i);
            bad++;
        }
        if (eng_index_find(slots, cap, s->name, s->name_len) != (int64_t)i) {
            fprintf(stderr, "index slot %llu: find does not return it\n",
                    (unsigned long long)i);
            bad++;
        }
    }
    if (used != count) {
        fprintf(stderr, "index: %llu occupied slots, count %llu\n",
                (unsigned long long)used, (unsigned long long)count);
        bad++;
    }
    return bad;
}

/* Shared block fixtures. Block A: prefix-related names, a None, an empty value,
 * a value with an embedded NUL. */
static const char *const IXA_NAMES[4] = {"a", "ab", "abc", "q"};
static const ix_val IXA_VALS[4] = {IV("x"), IV_NONE, IV(""), IV("he\0lo")};
static const uint64_t IXA_VERS[4] = {1, 2, 3, UINT64_MAX};
static const uint64_t IXA_LAST[4] = {10, 20, 30, 40};

static void test_index_body(void) {
    char longname[1001], midname[201], cnames[20][4];
    const char *bnames[3], *cn[20];
    ix_val bvals[3] = {IV_NONE, IV_NONE, IV("payload")}, cvals[20];
    uint64_t bvers[3] = {5, 6, 7}, blast[3] = {50, 60, 70}, cvers[20], clast[20];
    static const char *const dnames[2] = {"a", "s03"};
    static const ix_val dvals[2] = {IV_NONE, IV("new")};
    static const uint64_t dvers[2] = {99, 98}, dlast[2] = {100, 101};
    static const char pat[] = "0123456789abcdef";
    static uint8_t body[16384];
    ix_want want[32];
    size_t len = 0, len3;
    uint8_t *heap;
    eng_slot *slots;
    uint64_t count = 0, cap = 64;
    uint32_t i, nw = 0;

    memset(longname, 'L', 1000);
    longname[1000] = 0;
    memset(midname, 'm', 200);
    midname[200] = 0;
    bnames[0] = longname;
    bnames[1] = "e\xc3\xa9";
    bnames[2] = midname;
    for (i = 0; i < 20; i++) {
        ix_name2(cnames[i], "s", i);
        cn[i] = cnames[i];
        cvers[i] = 100 + i;
        clast[i] = 200 + i;
        if (i % 5 == 0) {
            cvals[i].p = NULL;
            cvals[i].len = 0;
        } else {
            cvals[i].p = pat + i % 3;
            cvals[i].len = i % 7;   /* 0 for i == 7, 14: empty, not None */
        }
    }

    len += ix_block(body + len, sizeof body - len, 4, IXA_NAMES, IXA_VALS, IXA_VERS,
                    IXA_LAST);
    len += ix_block(body + len, sizeof body - len, 3, bnames, bvals, bvers, blast);
    len += ix_block(body + len, sizeof body - len, 20, cn, cvals, cvers, clast);
    len3 = len;

    for (i = 0; i < 4; i++) {
        ix_want w = {IXA_NAMES[i], IXA_VERS[i], IXA_LAST[i], IXA_VALS[i]};
        want[nw++] = w;
    }
    for (i = 0; i < 3; i++) {
        ix_want w = {bnames[i], bvers[i], blast[i], bvals[i]};
        want[nw++] = w;
    }
    for (i = 0; i < 20; i++) {
        ix_want w = {cn[i], cvers[i], clast[i], cvals[i]};
        want[nw++] = w;
    }

    /* Three blocks (4 + 3 + 20 entries, the last spanning two insert batches). */
    heap = dup_exact(body, len3);
    slots = IX_ALLOC(cap);
    CHECK_RC(eng_index_put_body(slots, cap, &count, heap, len3), ENG_OK,
             "index put_body (3 blocks)");
    CHECK(count == 27, "index put_body count %llu want 27", (unsigned long long)count);
    for (i = 0; i < nw; i++) ix_expect(slots, cap, &want[i], "index body");
    {
        const uint8_t *bufs[1] = {heap};
        size_t lens[1] = {len3};
        CHECK(ix_consistent(slots, cap, count, bufs, lens, 1) == 0,
              "index body table consistent");
    }
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"abcd", 4) == -1, "find missing abcd");
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"s", 1) == -1, "find missing prefix s");
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"s20", 3) == -1, "find missing s20");
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"abc", 2) == eng_index_find(
              slots, cap, (const uint8_t *)"ab", 2), "find uses len, not the NUL");
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"", 0) == -1, "find empty name");
    CHECK(eng_index_find(slots, cap, NULL, 0) == -1, "find NULL name, len 0");
    CHECK(eng_index_find(slots, cap, (const uint8_t *)longname, 999) == -1,
          "find 999-byte prefix of the 1000-byte name");

    /* Applying the same body again changes nothing. */
    {
        eng_slot *again = IX_ALLOC(cap);
        memcpy(again, slots, (size_t)cap * sizeof *slots);
        CHECK_RC(eng_index_put_body(slots, cap, &count, heap, len3), ENG_OK,
                 "index put_body again");
        CHECK(count == 27 && memcmp(again, slots, (size_t)cap * sizeof *slots) == 0,
              "index put_body idempotent");
        free(again);
    }
    free(slots);
    free(heap);

    /* A fourth block naming "a" and "s03" again: later entries win. */
    len += ix_block(body + len, sizeof body - len, 2, dnames, dvals, dvers, dlast);
    heap = dup_exact(body, len);
    slots = IX_ALLOC(cap);
    count = 0;
    CHECK_RC(eng_index_put_body(slots, cap, &count, heap, len), ENG_OK,
             "index put_body (4 blocks)");
    CHECK(count == 27, "index 4 blocks count %llu want 27", (unsigned long long)count);
    want[0].version = 99;
    want[0].last_tx = 100;
    want[0].value.p = NULL;
    want[0].value.len = 0;
    want[7 + 3].version = 98;
    want[7 + 3].last_tx = 101;
    want[7 + 3].value.p = "new";
    want[7 + 3].value.len = 3;
    for (i = 0; i < nw; i++) ix_expect(slots, cap, &want[i], "index body, later wins");
    free(slots);
    free(heap);

    /* An empty body, a NULL body of length 0: nothing to do. */
    slots = IX_ALLOC(cap);
    count = 0;
    CHECK_RC(eng_index_put_body(slots, cap, &count, NULL, 0), ENG_OK, "put_body(NULL, 0)");
    CHECK_RC(eng_index_put_body(slots, cap, &count, body, 0), ENG_OK, "put_body(len 0)");
    CHECK(count == 0, "empty body count");
    free(slots);
}

static void test_index_tx(void) {
    static const char *const snap_names[2] = {"acct/1", "snap-only"};
    static const ix_val snap_vals[2] = {IV("snap"), IV_NONE};
    static const uint64_t snap_vers[2] = {1, 5}, snap_last[2] = {3, 4};
    /* Record 100: repeats, delete, look-alike types. */
    static const char *const s1[9] = {"acct/1", "acct/2", "acct/1", "acct/2", "acct/3",
                                      "acct/4", "acct/5", "acct/6", "acct/7"};
    static const char *const t1[9] = {"created", "created", "updated", "delete", "deleted",
                                      "delet", "delete", "Delete", "xdelete"};
    static const ix_val d1[9] = {IV("{a}"), IV("B2"), IV("second"), IV("ignored"),
                                 IV("D3"), IV(""), IV(""), IV("X"), IV("x\0y")};
    static const uint64_t v1[9] = {2, 1, 3, 2, 1, 1, 1, 1, 1};
    /* Record 200: overwrites; acct/1 deleted then restored in the same record. */
    static const char *const s2[4] = {"acct/2", "acct/1", "acct/1", "new"};
    static const char *const t2[4] = {"recreated", "delete", "restored", "t"};
    static const ix_val d2[4] = {IV("back"), IV(""), IV("third"), IV("")};
    static const uint64_t v2[4] = {3, 4, 5, 1};
    static const ix_want want[9] = {
        {"acct/1", 5, 200, IV("third")},  {"acct/2", 3, 200, IV("back")},
        {"acct/3", 1, 100, IV("D3")},     {"acct/4", 1, 100, IV("")},
        {"acct/5", 1, 100, IV_NONE},      {"acct/6", 1, 100, IV("X")},
        {"acct/7", 1, 100, IV("x\0y")},   {"new", 1, 200, IV("")},
        {"snap-only", 5, 4, IV_NONE},
    };
    uint8_t tmp[4096];
    uint8_t *body, *r1, *r2, *r3;
    size_t lb, l1, l2, l3;
    eng_slot *slots;
    uint64_t count = 0, cap = 32;
    eng_tx_view v;
    uint32_t i;

    lb = ix_block(tmp, sizeof tmp, 2, snap_names, snap_vals, snap_vers, snap_last);
    body = dup_exact(tmp, lb);
    l1 = ix_tx(tmp, sizeof tmp, 100, 9, s1, t1, d1, v1);
    r1 = dup_exact(tmp, l1);
    l2 = ix_tx(tmp, sizeof tmp, 200, 4, s2, t2, d2, v2);
    r2 = dup_exact(tmp, l2);

    slots = IX_ALLOC(cap);
    CHECK_RC(eng_index_put_body(slots, cap, &count, body, lb), ENG_OK, "index tx: snapshot");
    memset(&v, 0, sizeof v);
    CHECK_RC(eng_index_put_tx(slots, cap, &count, r1, l1, &v), ENG_OK, "index put_tx 100");
    CHECK(v.tx_id == 100 && v.epoch == 7 && v.ts_ns == 8 && v.first_position == 9 &&
              v.event_count == 9 && v.streams_off == 56 + 20 * 9,
          "index put_tx view filled (100)");
    CHECK(count == 8, "index after tx 100: count %llu want 8", (unsigned long long)count);
    {
        /* After record 100 alone. */
        static const ix_want after1[4] = {
            {"acct/1", 3, 100, IV("second")}, {"acct/2", 2, 100, IV_NONE},
            {"acct/5", 1, 100, IV_NONE}, {"snap-only", 5, 4, IV_NONE},
        };
        for (i = 0; i < 4; i++) ix_expect(slots, cap, &after1[i], "index after tx 100");
    }
    memset(&v, 0, sizeof v);
    CHECK_RC(eng_index_put_tx(slots, cap, &count, r2, l2, &v), ENG_OK, "index put_tx 200");
    CHECK(v.tx_id == 200 && v.event_count == 4, "index put_tx view filled (200)");
    CHECK(count == 9, "index after tx 200: count %llu want 9", (unsigned long long)count);
    for (i = 0; i < 9; i++) ix_expect(slots, cap, &want[i], "index after tx 200");
    {
        const uint8_t *bufs[3] = {body, r1, r2};
        size_t lens[3] = {lb, l1, l2};
        CHECK(ix_consistent(slots, cap, count, bufs, lens, 3) == 0,
              "index tx table consistent");
    }
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"acct/8", 6) == -1, "find acct/8");
    free(slots);

    /* 40 events cycling over 5 streams (three insert batches): the last of each wins. */
    {
        const char *s3[40], *t3[40];
        char dat[40][4];
        ix_val d3[40];
        uint64_t v3[40];
        static const char *const names5[5] = {"r0", "r1", "r2", "r3", "r4"};
        for (i = 0; i < 40; i++) {
            s3[i] = names5[(i * 3) % 5];
            t3[i] = (i % 4 == 1) ? "delete" : "set";
            ix_name2(dat[i], "", i);
            d3[i].p = dat[i];
            d3[i].len = i % 3 == 0 ? 0 : 2;
            v3[i] = i + 1;
        }
        l3 = ix_tx(tmp, sizeof tmp, 300, 40, s3, t3, d3, v3);
        r3 = dup_exact(tmp, l3);
        cap = 8;
        count = 0;
        slots = IX_ALLOC(cap);
        CHECK_RC(eng_index_put_tx(slots, cap, &count, r3, l3, &v), ENG_OK,
                 "index put_tx 40 events");
        CHECK(count == 5 && v.event_count == 40, "index 40 events: count %llu",
              (unsigned long long)count);
        for (i = 0; i < 5; i++) {
            int j, last = -1;
            ix_want w;
            for (j = 0; j < 40; j++)
                if (s3[j] == names5[i]) last = j;
            w.name = names5[i];
            w.version = v3[last];
            w.last_tx = 300;
            if (t3[last][0] == 'd') {
                w.value.p = NULL;
                w.value.len = 0;
            } else {
                w.value = d3[last];
            }
            ix_expect(slots, cap, &w, "index 40 events");
        }
        free(slots);
        free(r3);
    }
    free(body);
    free(r1);
    free(r2);
}

/* n distinct names "f00".."f<n-1>" in one record / in blocks of at most 16. */
static char IX_F[64][4];
static const char *IX_FP[64];

static void ix_fnames(void) {
    int i;
    for (i = 0; i < 64; i++) {
        ix_name2(IX_F[i], "f", (unsigned)i);
        IX_FP[i] = IX_F[i];
    }
}

/* Grows slots (cap *capp) by rehashing into a fresh zeroed table of new_cap. */
static eng_slot *ix_grow(eng_slot *slots, uint64_t *capp, uint64_t new_cap,
                         uint64_t *count, const char *what) {
    eng_slot *bigger = IX_ALLOC(new_cap);
    CHECK_RC(eng_index_rehash(slots, *capp, bigger, new_cap, count), ENG_OK, what);
    free(slots);
    *capp = new_cap;
    return bigger;
}

/* Compares two tables entry by entry (same names, same fields). */
static int ix_same_entries(const eng_slot *a, uint64_t acap, uint64_t acount,
                           const eng_slot *b, uint64_t bcap, uint64_t bcount) {
    uint64_t i;
    int bad = acount != bcount;
    for (i = 0; i < acap; i++) {
        int64_t j;
        const eng_slot *s = &a[i], *t;
        if (s->hash == 0) continue;
        j = eng_index_find(b, bcap, s->name, s->name_len);
        if (j < 0) {
            bad++;
            continue;
        }
        t = &b[j];
        if (t->hash != s->hash || t->version != s->version || t->last_tx != s->last_tx ||
            t->value != s->value || t->value_len != s->value_len || t->name != s->name)
            bad++;
    }
    return bad;
}

static void test_index_full(void) {
    const char *types[64];
    ix_val data[64];
    uint64_t vers[64], last[64];
    uint8_t tmp[8192];
    uint8_t *r12, *r1, *rover, *r30, *body;
    size_t l12, l1, lover, l30, lb = 0;
    eng_slot *slots, *ref;
    uint64_t count = 0, cap = 16, rcount = 0;
    eng_tx_view v;
    int i, grows;

    ix_fnames();
    for (i = 0; i < 64; i++) {
        types[i] = i % 7 == 3 ? "delete" : "t";
        data[i].p = IX_F[i];
        data[i].len = 3;
        vers[i] = (uint64_t)i + 1;
        last[i] = (uint64_t)i + 1000;
    }

    /* cap 16 holds 12 entries: (12 + 1) * 4 > 16 * 3. */
    l12 = ix_tx(tmp, sizeof tmp, 1, 12, IX_FP, types, data, vers);
    r12 = dup_exact(tmp, l12);
    l1 = ix_tx(tmp, sizeof tmp, 2, 1, IX_FP + 12, types + 12, data + 12, vers + 12);
    r1 = dup_exact(tmp, l1);
    lover = ix_tx(tmp, sizeof tmp, 3, 12, IX_FP, types + 1, data + 1, vers + 1);
    rover = dup_exact(tmp, lover);
    slots = IX_ALLOC(cap);
    CHECK_RC(eng_index_put_tx(slots, cap, &count, r12, l12, &v), ENG_OK, "full: 12 in 16");
    CHECK(count == 12, "full: count 12");
    CHECK_RC(eng_index_put_tx(slots, cap, &count, r1, l1, &v), ENG_E_ARG,
             "full: 13th entry in cap 16");
    CHECK(count == 12, "full: count stays 12 after ENG_E_ARG");
    CHECK(eng_index_find(slots, cap, (const uint8_t *)"f12", 3) == -1, "full: f12 absent");
    CHECK_RC(eng_index_put_tx(slots, cap, &count, rover, lover, &v), ENG_OK,
             "full: overwriting 12 existing entries needs no slot");
    CHECK(count == 12 && v.tx_id == 3, "full: overwrite count/view");
    {
        ix_want w = {"f05", 7, 3, IV("f06")};
        ix_expect(slots, cap, &w, "full: overwritten entry");
    }

    /* Rehash refusals leave the new table untouched. */
    {
        eng_slot *n32 = IX_ALLOC(64), *zero = IX_ALLOC(64);
        uint64_t big = 25;
        CHECK_RC(eng_index_rehash(slots, cap, n32, 16, &count), ENG_E_ARG,
                 "rehash new_cap == old_cap");
        CHECK_RC(eng_index_rehash(slots, cap, n32, 8, &count), ENG_E_ARG,
                 "rehash new_cap < old_cap");
        CHECK_RC(eng_index_rehash(slots, cap, n32, 48, &count), ENG_E_ARG,
                 "rehash new_cap 48 (not a power of two)");
        CHECK_RC(eng_index_rehash(slots, cap, n32, 33, &count), ENG_E_ARG,
                 "rehash new_cap 33");
        CHECK_RC(eng_index_rehash(slots, cap, n32, 0, &count), ENG_E_ARG, "rehash new_cap 0");
        CHECK_RC(eng_index_rehash(slots, 12, n32, 32, &count), ENG_E_ARG,
                 "rehash old_cap 12");
        CHECK_RC(eng_index_rehash(slots, cap, NULL, 32, &count), ENG_E_ARG,
                 "rehash new_slots NULL");
        CHECK_RC(eng_index_rehash(NULL, cap, n32, 32, &count), ENG_E_ARG,
                 "rehash old_slots NULL");
        CHECK_RC(eng_index_rehash(slots, cap, n32, 32, NULL), ENG_E_ARG, "rehash count NULL");
        CHECK_RC(eng_index_rehash(slots, cap, n32, 32, &big), ENG_E_ARG,
                 "rehash count 25 > 3/4 of 32");
        CHECK(memcmp(n32, zero, 64 * sizeof *n32) == 0, "rehash refusals wrote nothing");
        CHECK(count == 12, "rehash refusals kept count");
        free(n32);
        free(zero);
    }

    /* Grow to 32 and re-apply the refused record. */
    slots = ix_grow(slots, &cap, 32, &count, "rehash 16 -> 32");
    CHECK(count == 12, "rehash keeps count");
    {
        ix_want w = {"f05", 7, 3, IV("f06")};
        ix_expect(slots, cap, &w, "entry after rehash");
    }
    CHECK_RC(eng_index_put_tx(slots, cap, &count, r1, l1, &v), ENG_OK, "re-apply after grow");
    CHECK(count == 13 && v.tx_id == 2, "13 entries in cap 32");
    {
        const uint8_t *bufs[3] = {r12, r1, rover};
        size_t lens[3] = {l12, l1, lover};
        CHECK(ix_consistent(slots, cap, count, bufs, lens, 3) == 0,
              "table consistent after rehash");
    }
    free(slots);

    /* A partly applied record, grown twice (16 -> 32 -> 64) and re-applied, ends
     * as the same record applied once to a roomy table. 40 events over 30 names. */
    {
        const char *s40[40];
        ix_val d40[40];
        for (i = 0; i < 40; i++) {
            s40[i] = IX_FP[i < 30 ? i : (i * 7) % 30];
            d40[i] = data[i];
        }
        l30 = ix_tx(tmp, sizeof tmp, 9, 40, s40, types, d40, vers);
        r30 = dup_exact(tmp, l30);
    }
    cap = 16;
    count = 0;
    slots = IX_ALLOC(cap);
    grows = 0;
    {
        int rc;
        uint64_t seen[4] = {0, 0, 0, 0};
        while ((rc = eng_index_put_tx(slots, cap, &count, r30, l30, &v)) == ENG_E_ARG &&
               grows < 4) {
            seen[grows] = count;
            slots = ix_grow(slots, &cap, cap * 2, &count, "grow for 30 names");
            grows++;
        }
        CHECK_RC(rc, ENG_OK, "partly applied record completes after growth");
        CHECK(grows == 2 && cap == 64, "grew %d times to cap %llu (want 2, 64)", grows,
              (unsigned long long)cap);
        CHECK(grows == 2 && seen[0] == 12 && seen[1] == 24,
              "counts when full: 12 then 24");
    }
    ref = IX_ALLOC(128);
    CHECK_RC(eng_index_put_tx(ref, 128, &rcount, r30, l30, &v), ENG_OK, "reference apply");
    CHECK(count == 30 && rcount == 30, "30 names: count %llu, reference %llu",
          (unsigned long long)count, (unsigned long long)rcount);
    CHECK(ix_same_entries(ref, 128, rcount, slots, cap, count) == 0,
          "partly applied + re-applied == applied once (tx)");
    free(ref);
    free(slots);

    /* The same for a body: blocks of 16, 14, 10 entries over 30 names (10 repeat). */
    {
        static uint8_t btmp[8192];
        const char *bn[40];
        ix_val bv[40];
        for (i = 0; i < 40; i++) {
            bn[i] = IX_FP[i < 30 ? i : (i * 7) % 30];
            if (i % 6 == 2) {
                bv[i].p = NULL;
                bv[i].len = 0;
            } else {
                bv[i] = data[i];
            }
        }
        lb += ix_block(btmp + lb, sizeof btmp - lb, 16, bn, bv, vers, last);
        lb += ix_block(btmp + lb, sizeof btmp - lb, 14, bn + 16, bv + 16, vers + 16,
                       last + 16);
        lb += ix_block(btmp + lb, sizeof btmp - lb, 10, bn + 30, bv + 30, vers + 30,
                       last + 30);
        body = dup_exact(btmp, lb);
    }
    cap = 16;
    count = 0;
    slots = IX_ALLOC(cap);
    grows = 0;
    {
        int rc;
        while ((rc = eng_index_put_body(slots, cap, &count, body, lb)) == ENG_E_ARG &&
               grows < 4) {
            CHECK((count + 1) * 4 > cap * 3, "body ENG_E_ARG only when full");
            slots = ix_grow(slots, &cap, cap * 2, &count, "grow for body");
            grows++;
        }
        CHECK_RC(rc, ENG_OK, "partly applied body completes after growth");
        CHECK(grows == 2 && cap == 64, "body grew %d times (want 2)", grows);
    }
    ref = IX_ALLOC(64);
    rcount = 0;
    CHECK_RC(eng_index_put_body(ref, 64, &rcount, body, lb), ENG_OK, "reference body");
    CHECK(count == 30 && rcount == 30, "body 30 names: count %llu, reference %llu",
          (unsigned long long)count, (unsigned long long)rcount);
    CHECK(ix_same_entries(ref, 64, rcount, slots, cap, count) == 0,
          "partly applied + re-applied == applied once (body)");
    {
        /* f07 is entry 7 of block 1 and again entry 31 ((31 * 7) % 30 == 7) of block 3. */
        ix_want w = {"f07", 32, 1031, IV("f31")};
        ix_expect(slots, cap, &w, "body repeat across blocks");
    }
    {
        const uint8_t *bufs[1] = {body};
        size_t lens[1] = {lb};
        CHECK(ix_consistent(slots, cap, count, bufs, lens, 1) == 0, "body table consistent");
    }
    free(ref);
    free(slots);

    /* cap 4 holds 3 entries. */
    cap = 4;
    count = 0;
    slots = IX_ALLOC(cap);
    CHECK_RC(eng_index_put_tx(slots, cap, &count, r12, l12, &v), ENG_E_ARG, "cap 4 refuses 12");
    CHECK(count == 3, "cap 4 holds 3 (count %llu)", (unsigned long long)count);
    free(slots);

    free(body);
    free(r30);
    free(r12);
    free(r1);
    free(rover);
}

static void test_index_args(void) {
    uint8_t rec[512], blk[512];
    size_t lr = tx_sample(rec, sizeof rec), lk = bk_sample(blk, sizeof blk);
    eng_slot slots[16], zero[16];
    uint64_t count = 0;
    eng_tx_view v;

    memset(slots, 0, sizeof slots);
    memset(zero, 0, sizeof zero);
    CHECK_RC(eng_index_put_body(NULL, 16, &count, blk, lk), ENG_E_ARG, "put_body slots NULL");
    CHECK_RC(eng_index_put_body(slots, 12, &count, blk, lk), ENG_E_ARG, "put_body cap 12");
    CHECK_RC(eng_index_put_body(slots, 2, &count, blk, lk), ENG_E_ARG, "put_body cap 2");
    CHECK_RC(eng_index_put_body(slots, 1, &count, blk, lk), ENG_E_ARG, "put_body cap 1");
    CHECK_RC(eng_index_put_body(slots, 0, &count, blk, lk), ENG_E_ARG, "put_body cap 0");
    CHECK_RC(eng_index_put_body(slots, 16, NULL, blk, lk), ENG_E_ARG, "put_body count NULL");
    CHECK_RC(eng_index_put_body(slots, 16, &count, NULL, lk), ENG_E_ARG,
             "put_body body NULL, len > 0");
    CHECK_RC(eng_index_put_tx(NULL, 16, &count, rec, lr, &v), ENG_E_ARG, "put_tx slots NULL");
    CHECK_RC(eng_index_put_tx(slots, 24, &count, rec, lr, &v), ENG_E_ARG, "put_tx cap 24");
    CHECK_RC(eng_index_put_tx(slots, 2, &count, rec, lr, &v), ENG_E_ARG, "put_tx cap 2");
    CHECK_RC(eng_index_put_tx(slots, 0, &count, rec, lr, &v), ENG_E_ARG, "put_tx cap 0");
    CHECK_RC(eng_index_put_tx(slots, 16, NULL, rec, lr, &v), ENG_E_ARG, "put_tx count NULL");
    CHECK_RC(eng_index_put_tx(slots, 16, &count, rec, lr, NULL), ENG_E_ARG, "put_tx view NULL");
    CHECK_RC(eng_index_put_tx(slots, 16, &count, NULL, lr, &v), ENG_E_ARG,
             "put_tx rec NULL, len > 0");
    CHECK_RC(eng_index_put_tx(slots, 16, &count, NULL, 0, &v), ENG_E_TRUNCATED,
             "put_tx rec NULL, len 0");
    CHECK(count == 0 && memcmp(slots, zero, sizeof slots) == 0,
          "argument errors leave the table untouched");

    /* The smallest table: cap 4. */
    CHECK_RC(eng_index_put_body(slots, 4, &count, blk, lk), ENG_E_ARG,
             "put_body 4 entries into cap 4");
    CHECK(count == 3, "cap 4 holds 3");
    count = 0;
    memset(slots, 0, sizeof slots);
    CHECK_RC(eng_index_put_body(slots, 8, &count, blk, lk), ENG_OK, "put_body into cap 8");
    CHECK(count == 4, "cap 8 count 4");
    CHECK(eng_index_find(slots, 8, (const uint8_t *)"key2", 4) >= 0, "find key2 in cap 8");

    CHECK(eng_index_find(NULL, 8, (const uint8_t *)"key2", 4) == -1, "find slots NULL");
    CHECK(eng_index_find(slots, 12, (const uint8_t *)"key2", 4) == -1, "find cap 12");
    CHECK(eng_index_find(slots, 2, (const uint8_t *)"key2", 4) == -1, "find cap 2");
    CHECK(eng_index_find(slots, 0, (const uint8_t *)"key2", 4) == -1, "find cap 0");
    CHECK(eng_index_find(slots, 8, NULL, 4) == -1, "find name NULL, len 4");
    CHECK(eng_index_find(slots, 8, NULL, 0) == -1, "find name NULL, len 0");
}

/* Forged slots (the public eng_slot layout): a slot whose hash and length match
 * but whose bytes differ is not the name (a hash collision), and find refuses a
 * cap that is not a power of two even when every slot would match. */
static void test_index_forged(void) {
    static const char *const sn[1] = {"k1"}, *const ty[1] = {"t"};
    static const ix_val dv[1] = {IV("v1")};
    static const uint64_t ver[1] = {4};
    uint8_t tmp[512], *rec;
    size_t lr;
    eng_slot slots[16], all[16];
    uint64_t count = 0, caps[5] = {6, 10, 12, 15, 3}, i;
    eng_tx_view v;
    int64_t j, k;

    lr = ix_tx(tmp, sizeof tmp, 77, 1, sn, ty, dv, ver);
    rec = dup_exact(tmp, lr);
    memset(slots, 0, sizeof slots);
    CHECK_RC(eng_index_put_tx(slots, 16, &count, rec, lr, &v), ENG_OK, "forged: put k1");
    j = eng_index_find(slots, 16, (const uint8_t *)"k1", 2);
    CHECK(j >= 0 && count == 1, "forged: k1 at %lld", (long long)j);
    if (j < 0) {
        free(rec);
        return;
    }

    /* Every slot a copy of k1's: power-of-two caps find it, other caps do not. */
    for (i = 0; i < 16; i++) all[i] = slots[j];
    CHECK(eng_index_find(all, 16, (const uint8_t *)"k1", 2) >= 0, "forged: full copy, cap 16");
    CHECK(eng_index_find(all, 4, (const uint8_t *)"k1", 2) >= 0, "forged: full copy, cap 4");
    for (i = 0; i < 5; i++)
        CHECK(eng_index_find(all, caps[i], (const uint8_t *)"k1", 2) == -1,
              "forged: find with cap %llu", (unsigned long long)caps[i]);

    /* Same hash and length, other bytes: a collision, not a match. */
    slots[j].name = (const uint8_t *)"k2";
    CHECK(eng_index_find(slots, 16, (const uint8_t *)"k1", 2) == -1,
          "forged: find compares the name bytes");
    CHECK_RC(eng_index_put_tx(slots, 16, &count, rec, lr, &v), ENG_OK, "forged: put k1 again");
    k = eng_index_find(slots, 16, (const uint8_t *)"k1", 2);
    CHECK(count == 2 && k >= 0 && k != j, "forged: colliding k1 got its own slot (%lld)",
          (long long)k);
    CHECK(slots[j].name == (const uint8_t *)"k2" && slots[j].version == 4,
          "forged: colliding slot left alone");
    if (k >= 0)
        CHECK(slots[k].hash == slots[j].hash && slots[k].version == 4 &&
                  slots[k].last_tx == 77 && slots[k].value_len == 2 &&
                  memcmp(slots[k].value, "v1", 2) == 0,
              "forged: k1 entry after the collision");
    free(rec);
}

/* A flipped or truncated record/block: the decoder's code, and no change. */
static void test_index_corrupt(void) {
    uint8_t rec[512], blk[512], pre[512];
    size_t lr = tx_sample(rec, sizeof rec), lk = bk_sample(blk, sizeof blk), lp, i;
    eng_slot *slots = IX_ALLOC(16), *snap = IX_ALLOC(16);
    uint64_t count = 0;
    eng_tx_view v, vd;
    int bad_rc = 0, bad_ok = 0, bad_tab = 0;
    static const char *const pn[2] = {"k1", "other"};
    static const ix_val pv[2] = {IV("pre"), IV_NONE};
    static const uint64_t pver[2] = {1, 2}, plast[2] = {3, 4};

    /* Pre-fill: "k1" (also in the sample block) and "other". */
    lp = ix_block(pre, sizeof pre, 2, pn, pv, pver, plast);
    CHECK_RC(eng_index_put_body(slots, 16, &count, pre, lp), ENG_OK, "corrupt: pre-fill");
    memcpy(snap, slots, 16 * sizeof *slots);

#define UNCHANGED() (count == 2 && memcmp(slots, snap, 16 * sizeof *slots) == 0)
    /* Every single-byte flip of the record. */
    for (i = 0; i < lr; i++) {
        uint8_t *c = dup_exact(rec, lr);
        int rc, want;
        c[i] ^= 0x01;
        want = eng_tx_decode(c, lr, &vd);
        rc = eng_index_put_tx(slots, 16, &count, c, lr, &v);
        if (rc != want) bad_rc++;
        if (rc == ENG_OK) bad_ok++;
        if (!UNCHANGED()) bad_tab++;
        free(c);
    }
    CHECK(bad_rc == 0 && bad_ok == 0 && bad_tab == 0,
          "put_tx flips: %d wrong codes, %d accepted, %d changed the table", bad_rc, bad_ok,
          bad_tab);
    /* Every truncation of the record. */
    bad_rc = bad_ok = bad_tab = 0;
    for (i = 0; i < lr; i++) {
        uint8_t *c = dup_exact(rec, i);
        int rc = eng_index_put_tx(slots, 16, &count, c, i, &v);
        if (rc != tx_decode_copy(rec, i, &vd)) bad_rc++;
        if (rc == ENG_OK) bad_ok++;
        if (!UNCHANGED()) bad_tab++;
        free(c);
    }
    CHECK(bad_rc == 0 && bad_ok == 0 && bad_tab == 0,
          "put_tx truncations: %d wrong codes, %d accepted, %d changed the table", bad_rc,
          bad_ok, bad_tab);
    {
        uint8_t c[512];
        memcpy(c, rec, lr);
        c[lr - 9] ^= 0x01;
        CHECK_RC(eng_index_put_tx(slots, 16, &count, c, lr, &v), ENG_E_CHECKSUM,
                 "put_tx data byte flipped");
        CHECK_RC(eng_index_put_tx(slots, 16, &count, rec, 63, &v), ENG_E_TRUNCATED,
                 "put_tx truncated to 63");
        CHECK_RC(eng_index_put_tx(slots, 16, &count, rec, lr - 1, &v), ENG_E_CHECKSUM,
                 "put_tx one byte short");
        memcpy(c, rec, lr);
        put64(c + 56, 0);
        tx_resign(c, lr);
        CHECK_RC(eng_index_put_tx(slots, 16, &count, c, lr, &v), ENG_E_FIELD,
                 "put_tx version 0 (re-signed)");
        memcpy(c, rec, lr);
        c[116 + 5] = 'x';
        tx_resign(c, lr);
        CHECK_RC(eng_index_put_tx(slots, 16, &count, c, lr, &v), ENG_E_NAMES,
                 "put_tx name NUL gone (re-signed)");
        CHECK(UNCHANGED(), "put_tx corrupt records left the table unchanged");
    }

    /* Every single-byte flip and truncation of a one-block body. */
    bad_rc = bad_ok = bad_tab = 0;
    for (i = 0; i < lk; i++) {
        uint8_t *c = dup_exact(blk, lk);
        eng_block_view bv;
        int rc, want;
        c[i] ^= 0x01;
        want = eng_block_decode(c, lk, &bv);
        rc = eng_index_put_body(slots, 16, &count, c, lk);
        if (rc != want) bad_rc++;
        if (rc == ENG_OK) bad_ok++;
        if (!UNCHANGED()) bad_tab++;
        free(c);
    }
    CHECK(bad_rc == 0 && bad_ok == 0 && bad_tab == 0,
          "put_body flips: %d wrong codes, %d accepted, %d changed the table", bad_rc,
          bad_ok, bad_tab);
    bad_rc = bad_ok = bad_tab = 0;
    for (i = 1; i < lk; i++) {
        uint8_t *c = dup_exact(blk, i);
        eng_block_view bv;
        int rc = eng_index_put_body(slots, 16, &count, c, i);
        if (rc != bk_decode_copy(blk, i, &bv)) bad_rc++;
        if (rc == ENG_OK) bad_ok++;
        if (!UNCHANGED()) bad_tab++;
        free(c);
    }
    CHECK(bad_rc == 0 && bad_ok == 0 && bad_tab == 0,
          "put_body truncations: %d wrong codes, %d accepted, %d changed the table", bad_rc,
          bad_ok, bad_tab);
    {
        uint8_t c[1024];
        memcpy(c, blk, lk);
        c[125] ^= 0x20;
        CHECK_RC(eng_index_put_body(slots, 16, &count, c, lk), ENG_E_CHECKSUM,
                 "put_body value byte flipped");
        CHECK_RC(eng_index_put_body(slots, 16, &count, blk, 31), ENG_E_TRUNCATED,
                 "put_body truncated to 31");
        CHECK_RC(eng_index_put_body(slots, 16, &count, blk, lk - 1), ENG_E_OVERRUN,
                 "put_body one byte short");
        memcpy(c, blk, lk);
        put32(c + 104, 0);
        bk_resign(c, lk);
        CHECK_RC(eng_index_put_body(slots, 16, &count, c, lk), ENG_E_FIELD,
                 "put_body none_idx at non-zero length (re-signed)");
        CHECK(UNCHANGED(), "put_body corrupt blocks left the table unchanged");
        /* (Not checked: a body whose first block is valid and a later one corrupt may
         * leave the first block's entries partly indexed; only the code is asserted.) */
        /* A valid block followed by a truncated / corrupt one: the second's code. */
        memcpy(c, blk, lk);
        memcpy(c + lk, blk, lk);
        CHECK_RC(eng_index_put_body(slots, 16, &count, c, lk + 20), ENG_E_TRUNCATED,
                 "put_body second block truncated to 20");
        CHECK_RC(eng_index_put_body(slots, 16, &count, c, 2 * lk - 1), ENG_E_OVERRUN,
                 "put_body second block one byte short");
        c[lk + 125] ^= 0x20;
        CHECK_RC(eng_index_put_body(slots, 16, &count, c, 2 * lk), ENG_E_CHECKSUM,
                 "put_body second block flipped");
        c[lk + 125] ^= 0x20;
        memset(c + 2 * lk, 0, 8);
        CHECK_RC(eng_index_put_body(slots, 16, &count, c, 2 * lk + 8), ENG_E_TRUNCATED,
                 "put_body 8 zero bytes after the blocks");
    }
#undef UNCHANGED
    free(slots);
    free(snap);
}

/* ----------------------------------------------------------------- Main --- */

/* Tracking sections (record version 2): round trip with and without events, and
 * every error path of check_tracking, each on a record re-checksummed after the
 * edit so the layout check (not the checksum) is what refuses it. */
static size_t track_section(uint8_t *sec, uint32_t count, const char *const *names,
                            const uint64_t *positions) {
    size_t at = 4;
    uint32_t i;
    put32(sec, count);
    for (i = 0; i < count; i++) {
        uint32_t nl = (uint32_t)strlen(names[i]);
        put64(sec + at, positions[i]);
        put32(sec + at + 8, nl);
        memcpy(sec + at + 12, names[i], nl);
        at += 12 + nl;
    }
    return at;
}

static void reseal(uint8_t *b, size_t len) { put64(b + len - 8, eng_xxh64(b, len - 8, 0)); }

static void test_tx_tracking(void) {
    static const char *const names[2] = {"app-a", "b"};
    static const uint64_t positions[2] = {41, 7};
    uint8_t sec[64], buf[512], bad[512];
    uint64_t ver = 3, prev = 2;
    uint32_t dl = 2;
    eng_tx_view v;
    size_t sl = track_section(sec, 2, names, positions), len;
    int64_t r;

    CHECK(eng_tx_encoded_size(1, 2, 2, 2, (uint32_t)sl) == 56 + 20 + 6 + sl + 8,
          "encoded size counts the tracking section");
    r = eng_tx_encode(5, 1, 9, 100, 1, &ver, &prev, &dl, (const uint8_t *)"s", 2,
                      (const uint8_t *)"t", 2, (const uint8_t *)"ab", 2, sec, (uint32_t)sl,
                      buf, sizeof buf);
    CHECK_RC(r, (int64_t)(56 + 20 + 6 + sl + 8), "encode with tracking");
    len = (size_t)r;
    CHECK(buf[4] == 2 && buf[5] == 0 && buf[6] == 1 && buf[7] == 0,
          "a record with tracking is version 2, flags bit 0");
    CHECK_RC(eng_tx_decode(buf, len, &v), ENG_OK, "decode with tracking");
    CHECK(v.tracking_count == 2 && v.tracking_off == 56 + 20 + 6 + 4 &&
              v.tracking_len == sl - 4 && v.event_count == 1 && v.format_version == 2,
          "view of the tracking section");

    /* no events, tracking only */
    r = eng_tx_encode(6, 1, 9, 101, 0, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, 0, sec,
                      (uint32_t)sl, buf, sizeof buf);
    CHECK_RC(r, (int64_t)(56 + sl + 8), "encode tracking without events");
    len = (size_t)r;
    CHECK_RC(eng_tx_decode(buf, len, &v), ENG_OK, "decode tracking without events");
    CHECK(v.event_count == 0 && v.tracking_count == 2 && v.first_position == 101,
          "an eventless record keeps its position");
    CHECK_RC(eng_tx_encode(6, 1, 9, 101, 0, NULL, NULL, NULL, NULL, 0, NULL, 0,
                           (const uint8_t *)"x", 1, sec, (uint32_t)sl, buf, sizeof buf),
             ENG_E_ARG, "encode data without events");
    CHECK_RC(eng_tx_encode(6, 1, 9, 101, 0, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, 0,
                           NULL, 4, buf, sizeof buf),
             ENG_E_ARG, "encode tracking_len with a NULL section");

    /* error paths: edit the eventless record (section at 56) and reseal */
#define TRACK_CASE(edit, want, what)                 \
    do {                                             \
        memcpy(bad, buf, len);                       \
        edit;                                        \
        reseal(bad, len);                            \
        CHECK_RC(eng_tx_decode(bad, len, &v), want, what); \
    } while (0)
    TRACK_CASE(put32(bad + 56, 0), ENG_E_FIELD, "tracking count 0");
    TRACK_CASE(put32(bad + 56, 3), ENG_E_OVERRUN, "tracking count past the end");
    TRACK_CASE(put32(bad + 56, 1), ENG_E_TRAILING, "tracking bytes after the entries");
    TRACK_CASE(put64(bad + 60, 0), ENG_E_FIELD, "tracking position 0");
    TRACK_CASE(put32(bad + 68, 0), ENG_E_NAMES, "tracking name empty");
    TRACK_CASE(put32(bad + 68, ENG_MAX_NAME + 1), ENG_E_NAMES, "tracking name too long");
    TRACK_CASE(put32(bad + 68, 200), ENG_E_OVERRUN, "tracking name past the end");
    TRACK_CASE(bad[73] = 0, ENG_E_NAMES, "tracking name holds a NUL");
    TRACK_CASE(bad[6] = 3, ENG_E_FIELD, "unknown version-2 flag");
    TRACK_CASE(bad[6] = 0, ENG_E_FIELD, "version 2 without tracking and no events");
    TRACK_CASE(bad[4] = 1, ENG_E_FIELD, "version 1 cannot have zero events");
    TRACK_CASE(bad[4] = 3, ENG_E_VERSION, "record version 3");
#undef TRACK_CASE
    /* every truncation of the eventless record fails cleanly */
    {
        size_t cut;
        for (cut = 0; cut < len; cut++) {
            memcpy(bad, buf, cut);
            if (cut >= 64) reseal(bad, cut);
            CHECK(eng_tx_decode(bad, cut, &v) < 0, "truncated tracking record at %zu", cut);
        }
    }
}

/* Snapshots from the index: eng_index_mark and eng_index_columns over the sample
 * block's four entries (k1 "hi", key2 None, k3 None, z "abc"). */
typedef struct {
    uint64_t versions[8], last_tx[8];
    uint32_t lens[8], none_idx[8];
    uint8_t names[64], values[64];
    eng_columns c;
} ix_cols;

/* Gathers from *pos with the given limits and round-trips the columns through
 * eng_block_encode/eng_block_decode; returns eng_index_columns's rc. The name and
 * value buffers C writes are heap blocks of exactly ncap and vcap bytes (and the
 * column arrays of exactly most entries), so AddressSanitizer sees any overrun;
 * what was written is copied into *o. */
static int ix_gather(const eng_slot *slots, uint64_t cap, const uint8_t *bits, uint64_t *pos,
                     uint32_t most, uint64_t target, size_t ncap, size_t vcap, ix_cols *o) {
    int rc;
    size_t cols = most ? most : 1;
    uint8_t *names = malloc(ncap ? ncap : 1), *values = malloc(vcap ? vcap : 1);
    uint64_t *vers = malloc(cols * 8), *last = malloc(cols * 8);
    uint32_t *lens = malloc(cols * 4), *none = malloc(cols * 4);
    if (!names || !values || !vers || !last || !lens || !none) exit(2);
    memset(o, 0xAB, sizeof *o);
    rc = eng_index_columns(slots, cap, bits, pos, most, target, vers, last, lens, none, names,
                           ncap, values, vcap, &o->c);
    if (rc == ENG_OK && (o->c.n > 8 || o->c.names_len > sizeof o->names ||
                         o->c.values_len > sizeof o->values)) {
        fprintf(stderr, "ix_gather: a gather larger than ix_cols holds (a test bug)\n");
        exit(2);
    }
    if (rc == ENG_OK) {
        memcpy(o->versions, vers, o->c.n * 8);
        memcpy(o->last_tx, last, o->c.n * 8);
        memcpy(o->lens, lens, o->c.n * 4);
        memcpy(o->none_idx, none, o->c.none_count * 4);
        memcpy(o->names, names, o->c.names_len);
        memcpy(o->values, values, o->c.values_len);
    }
    free(names);
    free(values);
    free(vers);
    free(last);
    free(lens);
    free(none);
    if (rc == ENG_OK && o->c.n > 0) {
        uint8_t out[512];
        eng_block_view v;
        int64_t w = eng_block_encode(o->c.n, o->versions, o->last_tx, o->lens, o->c.none_count,
                                     o->none_idx, o->names, o->c.names_len, o->values,
                                     o->c.values_len, out, sizeof out);
        CHECK(w > 0 && bk_decode_copy(out, (size_t)w, &v) == ENG_OK && v.entry_count == o->c.n,
              "gathered columns encode to a valid block (rc %lld)", (long long)w);
    }
    return rc;
}

static void test_index_snapshot(void) {
    uint8_t blk[512], bits[2] = {0, 0}, all[2] = {0xFF, 0xFF};
    size_t lk = bk_sample(blk, sizeof blk);
    eng_slot slots[16];
    uint64_t count = 0, pos = 0;
    uint32_t seen = 0, total = 0, rounds = 0;
    ix_cols o;

    memset(slots, 0, sizeof slots);
    CHECK_RC(eng_index_put_body(slots, 16, &count, blk, lk), ENG_OK, "snapshot: put_body");

    /* everything, in one block: 4 entries, 2 None, names with their NULs */
    CHECK_RC(ix_gather(slots, 16, NULL, &pos, 8, 1 << 20, 64, 64, &o), ENG_OK, "gather all");
    CHECK(o.c.n == 4 && o.c.none_count == 2 && o.c.names_len == 13 && o.c.values_len == 5,
          "gather all: n %u none %u names %u values %u", o.c.n, o.c.none_count,
          o.c.names_len, o.c.values_len);
    CHECK(pos == 16, "gather all: pos at the end (%llu)", (unsigned long long)pos);
    CHECK_RC(ix_gather(slots, 16, NULL, &pos, 8, 1 << 20, 64, 64, &o), ENG_OK, "gather at end");
    CHECK(o.c.n == 0, "nothing left once pos == cap");

    /* marking: key2 and z; a repeat and an absent name count nothing */
    CHECK(eng_index_mark(slots, 16, (const uint8_t *)"key2\0nope\0z\0key2", 17, bits) == 2,
          "mark two distinct indexed names");
    CHECK(eng_index_mark(slots, 16, (const uint8_t *)"z\0", 2, bits) == 0, "mark again: 0");
    CHECK(eng_index_mark(slots, 16, (const uint8_t *)"k1", 2, bits) == ENG_E_ARG,
          "mark: a name not ended by a NUL");
    CHECK(eng_index_mark(slots, 16, NULL, 0, bits) == 0, "mark nothing");
    CHECK(eng_index_mark(slots, 16, NULL, 3, bits) == ENG_E_ARG, "mark NULL names, len 3");
    CHECK(eng_index_mark(slots, 16, (const uint8_t *)"z\0", 2, NULL) == ENG_E_ARG,
          "mark NULL bits");
    CHECK(eng_index_mark(slots, 12, (const uint8_t *)"z\0", 2, bits) == ENG_E_ARG,
          "mark cap 12");
    pos = 0;
    CHECK_RC(ix_gather(slots, 16, bits, &pos, 8, 1 << 20, 64, 64, &o), ENG_OK, "gather unmarked");
    CHECK(o.c.n == 2 && o.c.none_count == 1 && o.c.values_len == 2 &&
          eng_index_find(slots, 16, o.names, 2) >= 0,
          "gather unmarked: k1 and k3 (n %u)", o.c.n);
    pos = 0;
    CHECK_RC(ix_gather(slots, 16, all, &pos, 8, 1 << 20, 64, 64, &o), ENG_OK, "all marked");
    CHECK(o.c.n == 0 && pos == 16, "all marked: nothing");

    /* cuts: by entries, by target bytes, by buffer room; every entry exactly once */
    for (pos = 0, rounds = 0; rounds < 10; rounds++) {
        CHECK_RC(ix_gather(slots, 16, NULL, &pos, 1, 1 << 20, 64, 64, &o), ENG_OK, "one each");
        if (o.c.n == 0) break;
        total += o.c.n;
        seen += o.c.names_len;
    }
    CHECK(total == 4 && seen == 13 && rounds == 4, "max_entries 1: 4 blocks of 1");
    for (pos = 0, total = 0, rounds = 0; rounds < 10; rounds++) {
        CHECK_RC(ix_gather(slots, 16, NULL, &pos, 8, 1, 64, 64, &o), ENG_OK, "target 1");
        if (o.c.n == 0) break;
        total += o.c.n;
        CHECK(o.c.values_len >= 1 || pos == 16, "target 1: a block ends at its first value");
    }
    /* each of the two valued entries ends a block; the None entries after the last one
     * in slot order (if any) make a third */
    CHECK(total == 4 && rounds >= 2 && rounds <= 3,
          "target 1: two valued entries end two blocks (%u)", rounds);
    for (pos = 0, total = 0, rounds = 0; rounds < 10; rounds++) {
        CHECK_RC(ix_gather(slots, 16, NULL, &pos, 8, 1 << 20, 64, 3, &o), ENG_OK, "values 3");
        if (o.c.n == 0) break;
        total += o.c.n;
        CHECK(o.c.values_len <= 3, "values_cap 3 respected (%u)", o.c.values_len);
    }
    CHECK(total == 4 && rounds == 2, "values_cap 3: \"hi\" and \"abc\" in two blocks (%u)",
          rounds);
    pos = 0;
    CHECK_RC(ix_gather(slots, 16, NULL, &pos, 8, 1 << 20, 2, 64, &o), ENG_E_ARG,
             "names_cap 2: not even one name fits");
    CHECK(pos == 0, "a refused gather leaves pos");
    CHECK(o.c.n == 0 && o.c.names_len >= 3 && o.c.names_len <= 5 && o.c.values_len <= 3,
          "a refused gather says what the entry needs (names %u, values %u)",
          o.c.names_len, o.c.values_len);
    {   /* a value larger than values_cap, with room for the name: its size is told */
        uint64_t p2 = 0;
        int found = 0;
        for (p2 = 0; p2 < 16 && !found; p2++) {
            uint64_t q = p2;
            if (slots[p2].hash == 0 || slots[p2].value_len != 3) continue;
            CHECK_RC(ix_gather(slots, 16, NULL, &q, 8, 1 << 20, 64, 2, &o), ENG_E_ARG,
                     "values_cap 2 at \"abc\"");
            CHECK(o.c.values_len == 3 && q == p2, "needs 3 value bytes, pos kept");
            found = 1;
        }
        CHECK(found, "the 3-byte value's slot was found");
    }

    /* arguments */
    pos = 0;
    CHECK_RC(ix_gather(NULL, 16, NULL, &pos, 8, 1, 64, 64, &o), ENG_E_ARG, "columns NULL slots");
    CHECK_RC(ix_gather(slots, 12, NULL, &pos, 8, 1, 64, 64, &o), ENG_E_ARG, "columns cap 12");
    CHECK_RC(ix_gather(slots, 16, NULL, &pos, 0, 1, 64, 64, &o), ENG_E_ARG, "columns most 0");
    pos = 17;
    CHECK_RC(ix_gather(slots, 16, NULL, &pos, 8, 1, 64, 64, &o), ENG_E_ARG, "columns pos > cap");
    CHECK_RC(eng_index_columns(slots, 16, NULL, NULL, 8, 1, o.versions, o.last_tx, o.lens,
                               o.none_idx, o.names, 64, o.values, 64, &o.c), ENG_E_ARG,
             "columns NULL pos");
    pos = 0;
    CHECK_RC(eng_index_columns(slots, 16, NULL, &pos, 8, 1, o.versions, o.last_tx, o.lens,
                               o.none_idx, o.names, 64, NULL, 64, &o.c), ENG_E_ARG,
             "columns NULL values");
}

int main(void) {
    test_xxh64();
    test_tx_roundtrip();
    test_tx_encode_args();
    test_seg_frame();
    test_seg_seal();
    test_xxh64_v();
    test_tx_errors();
    test_tx_find_stream();
    test_tx_truncation();
    test_tx_tracking();
    test_block_roundtrip();
    test_block_encode_args();
    test_block_errors();
    test_block_truncation();
    test_index_body();
    test_index_tx();
    test_index_full();
    test_index_args();
    test_index_forged();
    test_index_corrupt();
    test_index_snapshot();
    printf("test_core: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
