package sgx

import (
	"fmt"
	"slices"
	"time"
)

// checkModuleIdentity checks a TD's TDX module as Intel's QVL does: MRSIGNERSEAM must be the
// module identity's MRSIGNER, and SEAMATTRIBUTES must be zero and equal to its attributes (QVL
// compares them byte for byte, without the mask). The identity is the TCB info's tdxModule, or,
// when TEE_TCB_SVN[1] (the module's major version) is not 0, its tdxModuleIdentities entry
// "TDX_%02X". Nothing is checked for an SGX quote.
func (v *Verifier) checkModuleIdentity(q *Quote) error {
	if q.TD == nil {
		return nil
	}
	m, name := v.tcbInfo.TDXModule, "tdxModule"
	if major := q.TD.TEETCBSVN[1]; major > 0 {
		id, err := v.moduleIdentity(major)
		if err != nil {
			return err
		}
		m, name = &id.TDXModule, id.ID
	}
	switch {
	case q.TD.MRSignerSEAM != m.MRSigner:
		return fmt.Errorf("%w: MRSIGNERSEAM %x is not the MRSIGNER of %s, %x", ErrMismatch, q.TD.MRSignerSEAM, name, m.MRSigner)
	case q.TD.SEAMAttributes != [8]byte{} || q.TD.SEAMAttributes != m.Attributes:
		return fmt.Errorf("%w: SEAMATTRIBUTES %x, want zero and the attributes of %s, %x", ErrMismatch, q.TD.SEAMAttributes, name, m.Attributes)
	}
	return nil
}

// moduleIdentity returns the identity "TDX_%02X" of the TDX modules of a major version.
func (v *Verifier) moduleIdentity(major uint8) (*TDXModuleIdentity, error) {
	want := fmt.Sprintf("TDX_%02X", major)
	for i := range v.tcbInfo.TDXModuleIdentities {
		if id := &v.tcbInfo.TDXModuleIdentities[i]; id.ID == want || id.ID == fmt.Sprintf("TDX_%02x", major) {
			return id, nil
		}
	}
	return nil, fmt.Errorf("%w: the TCB info has no identity %s for the TDX module of TEE_TCB_SVN[1] = %d", ErrMismatch, want, major)
}

// evaluate finds the TCB levels of the platform, the TDX module and the QE and converges their
// statuses into the verdict, as Intel's QVL does (TcbLevelCheck, TdxModuleCheck,
// TDRelaunchCheck):
//
//   - the SGX level is the first whose SGX components and PCESVN are at most the PCK
//     certificate's; for a TD, the platform's level is the first of those whose TDX components
//     are also at most TEE_TCB_SVN's, bytes 0 and 1 skipped when byte 1 is not 0 (the module's
//     own identity grades them);
//   - the module's status is that of its identity's first level with ISVSVN at most
//     TEE_TCB_SVN[0] (UpToDate for a module without identity); an OutOfDate module makes the
//     platform OutOfDate (OutOfDateConfigurationNeeded if it needed configuration), a Revoked
//     one Revoked;
//   - a TD 1.5 whose module is OutOfDate but whose TEE_TCB_SVN2 (the module now) reaches the
//     newest levels is advised to relaunch, if the QE is UpToDate and the SGX level needs at
//     most configuration or software hardening;
//   - the QE's status converges last, as the module's did.
//
// A platform, module or QE below every level is an error (ErrTCBLevelNotSupported), and so is a
// final status of Revoked.
func (v *Verifier) evaluate(q *Quote, pck *PCKExtension, qe *QETCBLevel) (*Verdict, error) {
	t := v.tcbInfo
	sgxLevel, level := t.match(q, pck)
	if sgxLevel == nil || level == nil {
		what := fmt.Sprintf("PCK TCB %v PCESVN %d", pck.TCBComponents, pck.PCESVN)
		if sgxLevel != nil {
			what = fmt.Sprintf("TEE_TCB_SVN %x", q.TD.TEETCBSVN)
		}
		return nil, stepErr(StepTCBStatus, "%w: %s is below every level of the TCB info for FMSPC %X", ErrTCBLevelNotSupported, what, t.FMSPC)
	}
	vd := &Verdict{
		Quote:                   q,
		PCK:                     pck,
		FMSPC:                   fmt.Sprintf("%X", pck.FMSPC),
		PlatformStatus:          level.Status,
		QEStatus:                qe.Status,
		QEISVSVN:                q.QEReport.ISVSVN,
		TCBDate:                 earliest(level.TCBDate, qe.TCBDate),
		TCBEvaluationDataNumber: min(t.TCBEvaluationDataNumber, v.qeID.TCBEvaluationDataNumber),
		AdvisoryIDs:             slices.Clone(level.AdvisoryIDs),
	}
	status := level.Status
	if q.TD != nil && q.TD.TEETCBSVN[1] > 0 {
		id, err := v.moduleIdentity(q.TD.TEETCBSVN[1])
		if err != nil {
			return nil, &Error{Step: StepTDXModule, Err: err}
		}
		ml := isvsvnLevel(id.TCBLevels, uint16(q.TD.TEETCBSVN[0]))
		if ml == nil {
			return nil, stepErr(StepTCBStatus, "%w: TDX module %s ISVSVN %d is below every level of its identity", ErrTCBLevelNotSupported, id.ID, q.TD.TEETCBSVN[0])
		}
		vd.Module = &ModuleVerdict{ID: id.ID, ISVSVN: q.TD.TEETCBSVN[0], Status: ml.Status, TCBDate: ml.TCBDate, AdvisoryIDs: ml.AdvisoryIDs}
		vd.TCBDate = earliest(vd.TCBDate, ml.TCBDate)
		vd.AdvisoryIDs = mergeAdvisories(vd.AdvisoryIDs, ml.AdvisoryIDs)
		status = mergeStatus(status, ml.Status)
		if status != StatusRevoked && q.BodyType == BodyTD15 && qe.Status == StatusUpToDate && ml.Status == StatusOutOfDate {
			var err error
			if status, err = v.relaunch(q.TD, sgxLevel.Status, status); err != nil {
				return nil, err
			}
		}
	}
	vd.TCBStatus = mergeStatus(status, qe.Status)
	vd.AdvisoryIDs = mergeAdvisories(vd.AdvisoryIDs, qe.AdvisoryIDs)
	if vd.TCBStatus == StatusRevoked {
		return nil, stepErr(StepTCBStatus, "%w: platform TCB %s, TDX module %s, QE TCB %s", ErrRevoked, level.Status, vd.moduleStatus(), qe.Status)
	}
	vd.Behind = v.behind(q, pck)
	return vd, nil
}

// moduleStatus names the TDX module's status, "none" where it has no identity.
func (vd *Verdict) moduleStatus() string {
	if vd.Module == nil {
		return "none"
	}
	return vd.Module.Status
}

// match returns the SGX level of the platform (the first whose SGX components and PCESVN are at
// most the PCK certificate's) and its level: the SGX level for an enclave, and for a TD the first
// SGX-matching level whose TDX components are at most TEE_TCB_SVN's as well.
func (t *TCBInfo) match(q *Quote, pck *PCKExtension) (sgxLevel, level *TCBLevel) {
	for i := range t.TCBLevels {
		l := &t.TCBLevels[i]
		if !atLeast(pck.TCBComponents[:], l.SGXComponents[:], 0) || pck.PCESVN < l.PCESVN {
			continue
		}
		if sgxLevel == nil {
			sgxLevel = l
		}
		if q.TD == nil {
			return l, l
		}
		if atLeast(q.TD.TEETCBSVN[:], l.TDXComponents[:], tdxSkip(q.TD)) {
			return sgxLevel, l
		}
	}
	return sgxLevel, nil
}

// tdxSkip is how many leading bytes of TEE_TCB_SVN the TDX components do not grade: 2 when the
// module has an identity of its own (byte 1 not 0), which grades them.
func tdxSkip(td *TDReport) int {
	if td.TEETCBSVN[1] > 0 {
		return 2
	}
	return 0
}

// atLeast reports whether svns[i] >= want[i] for every i from from on.
func atLeast(svns, want []uint8, from int) bool {
	for i := from; i < len(want); i++ {
		if svns[i] < want[i] {
			return false
		}
	}
	return true
}

// relaunch returns the status of a TD 1.5 whose TDX module is OutOfDate: TDRelaunchAdvised (or
// TDRelaunchAdvisedConfigurationNeeded) when the SGX level needs at most configuration or
// software hardening, the platform is OutOfDate only because of the module, and TEE_TCB_SVN2 (the
// module running now) is at least the newest levels' (the module identity's newest ISVSVN, or
// TDX component 0 without identity, and TDX component 2); status otherwise.
func (v *Verifier) relaunch(td *TDReport, sgxStatus, status string) (string, error) {
	switch {
	case !slices.Contains([]string{StatusUpToDate, StatusSWHardeningNeeded, StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded}, sgxStatus),
		status != StatusOutOfDate && status != StatusOutOfDateConfigurationNeeded:
		return status, nil
	}
	newest := &v.tcbInfo.TCBLevels[0]
	svn2 := td.TEETCBSVN2
	module := int(newest.TDXComponents[0])
	if svn2[1] > 0 {
		id, err := v.moduleIdentity(svn2[1])
		if err != nil {
			return "", &Error{Step: StepTDXModule, Err: fmt.Errorf("TEE_TCB_SVN2: %w", err)}
		}
		module = int(id.TCBLevels[0].ISVSVN) // parsing requires at least one level
	}
	if int(svn2[0]) < module || svn2[2] < newest.TDXComponents[2] {
		return status, nil
	}
	if configurationNeeded(sgxStatus) || configurationNeeded(status) {
		return StatusTDRelaunchAdvisedConfigurationNeeded, nil
	}
	return StatusTDRelaunchAdvised, nil
}

func configurationNeeded(status string) bool {
	switch status {
	case StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded, StatusOutOfDateConfigurationNeeded, StatusTDRelaunchAdvisedConfigurationNeeded:
		return true
	}
	return false
}

// mergeStatus converges a platform status with the status of a part graded on its own (the TDX
// module, the QE) as Intel's QVL does: an OutOfDate part makes the platform at least OutOfDate
// (keeping ConfigurationNeeded), a Revoked part makes it Revoked. QVL treats every status of a
// part other than UpToDate and Revoked as OutOfDate.
func mergeStatus(platform, part string) string {
	switch {
	case part == StatusUpToDate:
		return platform
	case part == StatusRevoked:
		return StatusRevoked
	case platform == StatusUpToDate || platform == StatusSWHardeningNeeded:
		return StatusOutOfDate
	case platform == StatusConfigurationNeeded || platform == StatusConfigurationAndSWHardeningNeeded:
		return StatusOutOfDateConfigurationNeeded
	}
	return platform
}

// mergeAdvisories returns ids followed by those of more that are not among them.
func mergeAdvisories(ids, more []string) []string {
	ids = slices.Clone(ids)
	for _, id := range more {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// earliest returns the earlier of two dates.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// behind lists the platform's components that are below the newest TCB level of the collateral
// (the TCB info's first level, the module identity's and the QE identity's first levels).
func (v *Verifier) behind(q *Quote, pck *PCKExtension) []Behind {
	t := v.tcbInfo
	newest := &t.TCBLevels[0]
	var list []Behind
	add := func(component string, index int, name string, platform, level int) {
		if platform < level {
			list = append(list, Behind{component, index, name, platform, level})
		}
	}
	for i, svn := range newest.SGXComponents {
		add(BehindSGX, i, t.SGXComponentNames[i], int(pck.TCBComponents[i]), int(svn))
	}
	add(BehindPCE, 0, "PCE", int(pck.PCESVN), int(newest.PCESVN))
	if td := q.TD; td != nil {
		for i := tdxSkip(td); i < len(newest.TDXComponents); i++ {
			add(BehindTDX, i, t.TDXComponentNames[i], int(td.TEETCBSVN[i]), int(newest.TDXComponents[i]))
		}
		if td.TEETCBSVN[1] > 0 {
			if id, err := v.moduleIdentity(td.TEETCBSVN[1]); err == nil {
				add(BehindTDXModule, 0, id.ID, int(td.TEETCBSVN[0]), int(id.TCBLevels[0].ISVSVN))
			}
		}
	}
	add(BehindQE, 0, v.qeID.ID, int(q.QEReport.ISVSVN), int(v.qeID.TCBLevels[0].ISVSVN))
	return list
}
