package manifest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// document is a manifest as Gramine's schema (python/graminelibos/manifest_check.py) describes
// it: decoding into it checks the types, and a key it lacks is unknown. The fields under
// "ignored" are Gramine keys that mean nothing outside an SGX enclave or Gramine's LibOS.
type document struct {
	LibOS struct {
		Entrypoint string `toml:"entrypoint"`
		// ignored
		CheckInvalidPointers bool `toml:"check_invalid_pointers"`
	} `toml:"libos"`

	Loader struct {
		Argv           []string          `toml:"argv"`
		UseCmdlineArgv bool              `toml:"insecure__use_cmdline_argv"`
		UseHostEnv     bool              `toml:"insecure__use_host_env"`
		Env            map[string]EnvVar `toml:"env"`
		LogLevel       string            `toml:"log_level"`
		UID            *uint32           `toml:"uid"`
		GID            *uint32           `toml:"gid"`
		// ignored
		Entrypoint  any    `toml:"entrypoint"` // Gramine's LibOS, in any of its forms
		DisableASLR bool   `toml:"insecure__disable_aslr"`
		LogFile     string `toml:"log_file"`
	} `toml:"loader"`

	FS struct {
		Root     *root   `toml:"root"`
		Mounts   []Mount `toml:"mounts"`
		StartDir string  `toml:"start_dir"`
	} `toml:"fs"`

	SGX struct {
		TrustedFiles      []TrustedFile `toml:"trusted_files"`
		AllowedFiles      []string      `toml:"allowed_files"`
		Debug             bool          `toml:"debug"`
		ISVProdID         uint16        `toml:"isvprodid"`
		ISVSVN            uint16        `toml:"isvsvn"`
		RemoteAttestation string        `toml:"remote_attestation"`
		FileCheckPolicy   string        `toml:"file_check_policy"`
		// ignored
		CPUFeatures struct {
			AVX    string `toml:"avx"`
			AVX512 string `toml:"avx512"`
			AMX    string `toml:"amx"`
			MPX    string `toml:"mpx"`
			PKRU   string `toml:"pkru"`
		} `toml:"cpu_features"`
		EDMMEnable                  bool   `toml:"edmm_enable"`
		EnableStats                 bool   `toml:"enable_stats"`
		EnclaveSize                 string `toml:"enclave_size"`
		AllowMemfaultsWithoutExinfo bool   `toml:"insecure__allow_memfaults_without_exinfo"`
		RPCThreadNum                int64  `toml:"insecure__rpc_thread_num"`
		MaxThreads                  int64  `toml:"max_threads"`
		PreheatEnclave              bool   `toml:"preheat_enclave"`
		Profile                     struct {
			Enable    string `toml:"enable"`
			Mode      string `toml:"mode"`
			WithStack bool   `toml:"with_stack"`
			Frequency int64  `toml:"frequency"`
		} `toml:"profile"`
		RAClientLinkable bool   `toml:"ra_client_linkable"`
		RAClientSPID     string `toml:"ra_client_spid"`
		SealKey          struct {
			FlagsMask string `toml:"flags_mask"`
			XFRMMask  string `toml:"xfrm_mask"`
			MiscMask  string `toml:"misc_mask"`
		} `toml:"seal_key"`
		UseExinfo             bool   `toml:"use_exinfo"`
		VTuneProfile          bool   `toml:"vtune_profile"`
		TrustedFilesCacheSize string `toml:"trusted_files_cache_size"`
	} `toml:"sgx"`

	// ignored, all of it
	Sys struct {
		AllowedIoctls []struct {
			RequestCode int64  `toml:"request_code"`
			Struct      string `toml:"struct"`
		} `toml:"allowed_ioctls"`
		Brk struct {
			MaxSize string `toml:"max_size"`
		} `toml:"brk"`
		DisallowSubprocesses              bool           `toml:"disallow_subprocesses"`
		EnableExtraRuntimeDomainNamesConf bool           `toml:"enable_extra_runtime_domain_names_conf"`
		EnableSigtermInjection            bool           `toml:"enable_sigterm_injection"`
		ExperimentalEnableFlock           bool           `toml:"experimental__enable_flock"`
		InsecureAllowEventfd              bool           `toml:"insecure__allow_eventfd"`
		IoctlStructs                      map[string]any `toml:"ioctl_structs"` // free-form
		DebugMockSyscalls                 []struct {
			Name   string `toml:"name"`
			Return int64  `toml:"return"`
		} `toml:"debug__mock_syscalls"`
		Stack struct {
			Size string `toml:"size"`
		} `toml:"stack"`
		FDs struct {
			Limit int64 `toml:"limit"`
		} `toml:"fds"`
	} `toml:"sys"`

	// ppml's own keys, outside Gramine's schema (gpu.go).
	PPML struct {
		GPUCount any    `toml:"gpus"`
		Network  string `toml:"network"` // none, host or mesh
		Job      string `toml:"job"`     // the job of a mesh
	} `toml:"ppml"`
}

// root is fs.root: a mount without a path, which is "/".
type root struct {
	Type    string `toml:"type"`
	URI     string `toml:"uri"`
	KeyName string `toml:"key_name"`
}

// ppmlKeys returns ppml's own keys, the fields of the document's ppml table.
func ppmlKeys() []string {
	t := reflect.TypeFor[document]()
	f, _ := t.FieldByName("PPML")
	var keys []string
	for i := range f.Type.NumField() {
		keys = append(keys, "ppml."+f.Type.Field(i).Tag.Get("toml"))
	}
	return keys
}

// freeForm are the keys whose content is not checked.
var freeForm = []string{"loader.entrypoint", "sys.ioctl_structs"}

// rejected are Gramine keys that ppml cannot honour, and Gramine keys of old, with what to do.
var rejected = map[string]string{
	"loader.argv_src_file": "ppml takes the arguments from loader.argv or the command line only",
	"loader.env_src_file":  "ppml takes the environment from loader.env only",
	"loader.preload":       "Gramine removed it; delete it",
	"fs.insecure__keys":    "ppml receives keys only from a provisioning server (SECRET_PROVISION_SERVERS)",
	"fs.mount":             "Gramine replaced the fs.mount.NAME tables by the fs.mounts list",
	"sgx.thread_num":       "Gramine renamed it sgx.max_threads",
	"sgx.nonpie_binary":    "Gramine removed it; delete it",
	"sgx.sigfile":          "Gramine removed it; delete it",
}

// checkKeys reports the keys the schema does not know: once for a table, not for each key in
// it, and with what to do for the keys of rejected.
func checkKeys(undecoded []toml.Key) error {
	unknown := map[string]bool{}
	for _, k := range undecoded {
		unknown[k.String()] = true
	}
	var msgs []string
	done := map[string]bool{}
	report := func(name, msg string) {
		if !done[name] {
			done[name] = true
			msgs = append(msgs, msg)
		}
	}
keys:
	for _, k := range undecoded {
		for i := 1; i <= len(k); i++ {
			p := k[:i].String()
			for _, f := range freeForm {
				if p == f {
					continue keys
				}
			}
			if hint, ok := rejected[p]; ok {
				report(p, fmt.Sprintf("manifest key %s: %s", p, hint))
				continue keys
			}
		}
		for i := 1; i <= len(k); i++ {
			p := k[:i].String()
			switch {
			case !unknown[p]:
				continue
			case k[0] == "ppml":
				report(p, fmt.Sprintf("unknown manifest key %s: it is not one of ppml's keys (%s)", p, strings.Join(ppmlKeys(), ", ")))
			default:
				report(p, fmt.Sprintf("unknown manifest key %s (it is not in Gramine's manifest schema)", p))
			}
			break
		}
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}
