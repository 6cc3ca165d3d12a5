/* A fake libnvidia-ml.so.1 for the tests of package nvml: the functions ppml calls, with the
 * structures declared as nvml.h declares them, so that the C compiler lays them out. It serves
 * one GPU whose certificate chain and attestation report the test sets (fake_set), records the
 * nonce it is asked for (fake_nonce) and the ready state (fake_ready). Built with -DNO_READY it
 * lacks nvmlSystemSetConfComputeGpusReadyState, as a driver too old for confidential computing. */
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct nvmlConfComputeSystemState_st {
	unsigned int environment;
	unsigned int ccFeature;
	unsigned int devToolsMode;
} nvmlConfComputeSystemState_t;

typedef struct nvmlConfComputeGpuCertificate_st {
	unsigned int certChainSize;
	unsigned int attestationCertChainSize;
	unsigned char certChain[0x1000];
	unsigned char attestationCertChain[0x1400];
} nvmlConfComputeGpuCertificate_t;

typedef struct nvmlConfComputeGpuAttestationReport_st {
	unsigned int isCecAttestationReportPresent;
	unsigned int attestationReportSize;
	unsigned int cecAttestationReportSize;
	unsigned char nonce[0x20];
	unsigned char attestationReport[0x2000];
	unsigned char cecAttestationReport[0x1000];
} nvmlConfComputeGpuAttestationReport_t;

#define GPU ((nvmlDevice_t)0x5a5a1234)

static int initialised;
static unsigned int cc = 1, ready;
static unsigned char report[0x2000], nonce[0x20];
static unsigned int reportSize;
static unsigned char chain[0x1400];
static unsigned int chainSize;

void fake_set(const unsigned char *r, unsigned int rn, const unsigned char *c, unsigned int cn, unsigned int ccFeature) {
	memcpy(report, r, reportSize = rn);
	memcpy(chain, c, chainSize = cn);
	cc = ccFeature;
}
void fake_nonce(unsigned char *out) { memcpy(out, nonce, sizeof nonce); }
unsigned int fake_ready(void) { return ready; }

nvmlReturn_t nvmlInit_v2(void) { initialised = 1; return 0; }
nvmlReturn_t nvmlShutdown(void) { initialised = 0; return 0; }
const char *nvmlErrorString(nvmlReturn_t r) { return r == 1 ? "Uninitialized" : "Invalid Argument"; }

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) {
	if (!initialised) return 1;
	*n = 1;
	return 0;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
	if (!initialised) return 1;
	if (i != 0) return 2;
	*d = GPU;
	return 0;
}
nvmlReturn_t nvmlSystemGetConfComputeState(nvmlConfComputeSystemState_t *s) {
	if (!initialised) return 1;
	s->environment = 2;
	s->ccFeature = cc;
	s->devToolsMode = 0;
	return 0;
}
nvmlReturn_t nvmlDeviceGetConfComputeGpuCertificate(nvmlDevice_t d, nvmlConfComputeGpuCertificate_t *c) {
	if (!initialised) return 1;
	if (d != GPU) return 2;
	memset(c, 0, sizeof *c);
	c->attestationCertChainSize = chainSize;
	memcpy(c->attestationCertChain, chain, chainSize);
	return 0;
}
nvmlReturn_t nvmlDeviceGetConfComputeGpuAttestationReport(nvmlDevice_t d, nvmlConfComputeGpuAttestationReport_t *r) {
	if (!initialised) return 1;
	if (d != GPU) return 2;
	memcpy(nonce, r->nonce, sizeof nonce);
	r->isCecAttestationReportPresent = 0;
	r->cecAttestationReportSize = 0;
	r->attestationReportSize = reportSize;
	memcpy(r->attestationReport, report, reportSize);
	return 0;
}
#ifndef NO_READY
nvmlReturn_t nvmlSystemSetConfComputeGpusReadyState(unsigned int isAcceptingWork) {
	if (!initialised) return 1;
	if (isAcceptingWork > 1) return 2;
	ready = isAcceptingWork;
	return 0;
}
#endif
