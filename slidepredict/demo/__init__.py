"""Generated data: synthetic slides with planted signals (`synthetic`) and the offline demo run (`run`)."""
