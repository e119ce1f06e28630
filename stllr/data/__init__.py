"""Datasets: the generated SHD stand-in and its frame reader."""
