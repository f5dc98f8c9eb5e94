"""Files: images and volumes, case folders, atomic writes, the output folder."""
