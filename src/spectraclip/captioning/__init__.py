"""Automated captioning of multispectral imagery: map tags (Overture Maps), natural-colour composites,
versioned prompts, vision-language backends, the resumable captioning job and caption-quality metrics.

The output of `run_caption_job` is the caption manifest the trainer reads (JSONL, one row per image).
"""
