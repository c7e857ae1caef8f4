from attn_bench.cli import main

main()
