# Solutions to the exercises of notebooks/03-teaching-efficiency.ipynb.
# Each `# exercise N` block replaces the answer cell `answer_N = ...  # your code` of its exercise:
# in the notebook, run `lesson.load_solution(N)` in that cell (it puts the block there, as %load does).

# exercise 1
answer_1 = d["batch"] / (d["tpot_ms"]["median"] / 1e3)

# exercise 2
# the FLOPs and bytes one more sequence adds
r1, r2 = (rl.roofline(model, b, 512, 128, "eager", torch.device("cpu")) for b in (1, 2))
answer_2 = (r2["decode_step_flops"] - r1["decode_step_flops"]) / (r2["decode_step_bytes"] - r1["decode_step_bytes"])

# exercise 3
at16 = rows[rows["prompt_len"] == 16].set_index("batch")["tpot_ms"]
answer_3 = (4 / at16[4]) / (1 / at16[1])

# exercise 4
# the first length whose cache exceeds the weights
answer_4 = llama8b.model_bytes // kv_per_token + 1

# exercise 5
# idle power x time of one token (batch 1)
answer_5 = e["idle_power_w"] * tpot_h200_s / h200_rep["batch"]

# exercise 6
# bytes per step / (the efficiency measured on the H100 x the Orin's peak bandwidth), in ms
answer_6 = roof_h100["decode_step_bytes"] / (roof_h100["mbu"] * orin.bandwidth) * 1e3
