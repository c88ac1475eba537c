; PSI JUNGFRAU 1M: two modules of 512 x 1024 pixels (75 um), stacked vertically,
; 36 pixels (2.7 mm) apart, beam at the centre of the detector.
; Raw frame as the monitor sees it: module 0 = rows 0..511 (top), module 1 =
; rows 512..1023 (bottom), no gap pixels. Frames are calibrated to photons.
; Chip-boundary big pixels are not described (one panel per module).
; Matches monitor.simulation.SimulatedJungfrau1M(module_gap_px=36).
; data, dim*, mask* and peak_list* match the monitor's CXI hit files, so CrystFEL reads
; them with this geometry as it is (indexamajig -i files.lst -g GEOM --peaks=cxi ...).
; Each run also writes its own detector.geom beside its hits, with the photon energy
; of its calibration and this clen.

photon_energy = 12400   ; eV
clen = 0.120            ; m
res = 13333.333333      ; pixels per metre (1 / 75 um)
adu_per_photon = 1
data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs
mask = /entry_1/data_1/mask
mask_good = 0x0
mask_bad = 0x1          ; bit 0: no valid reading in any frame of the file (bad pixel)
flag_lessthan = -32767  ; a frame's pixel without a valid reading in it (lost packet) reads -32768
peak_list = /entry_1/result_1
peak_list_type = cxi

m0/min_fs = 0
m0/max_fs = 1023
m0/min_ss = 0
m0/max_ss = 511
m0/fs = +1.000000x +0.000000y
m0/ss = +0.000000x -1.000000y
m0/corner_x = -512.0
m0/corner_y = 530.0

m1/min_fs = 0
m1/max_fs = 1023
m1/min_ss = 512
m1/max_ss = 1023
m1/fs = +1.000000x +0.000000y
m1/ss = +0.000000x -1.000000y
m1/corner_x = -512.0
m1/corner_y = -18.0
