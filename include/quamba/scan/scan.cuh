// quamba/scan/scan.cuh: the selective scan family, prefill (selective_scan.cuh; split along the
// sequence with a workspace: segmented_scan.cuh) and decode (state_update.cuh). See each
// header's brief for shapes, dtypes and requirements.
#pragma once

#include "quamba/scan/segmented_scan.cuh"
#include "quamba/scan/selective_scan.cuh"
#include "quamba/scan/state_update.cuh"
