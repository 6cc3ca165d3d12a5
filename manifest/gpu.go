package manifest

import "fmt"

// AllGPUs is Manifest.GPUs for ppml.gpus = "all".
const AllGPUs = -1

// parseGPUs reads ppml.gpus, ppml's own key outside Gramine's schema: "all", or how many GPUs
// (0 for none, as when the key is absent).
func parseGPUs(v any) (int, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case string:
		if v == "all" {
			return AllGPUs, nil
		}
	case int64:
		if v >= 0 && v <= 64 {
			return int(v), nil
		}
	}
	return 0, fmt.Errorf(`ppml.gpus = %v: write "all", or how many GPUs the workload gets (0 to 64)`, v)
}
