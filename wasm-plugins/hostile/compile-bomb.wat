;; Hostile: a component that is cheap to send and costly to compile.
;;
;; Its `tick` calls `$bomb`, one function with many i64 locals, all live across a loop whose
;; body is a `br_table` into as many nested blocks, each of which adds to one local. In wasm
;; that is a few bytes per local and per branch target; in Cranelift's SSA form every join
;; point gets a block parameter for every live local (locals x targets), which the register
;; allocator then has to work through: a package of some kilobytes takes seconds of CPU and
;; hundreds of MiB to compile. A host must refuse it at deploy with its compile bound
;; (`plugin.compile_cpu`, `plugin.compile_memory`), charge the CPU to the lease, and go on.
;;
;; `$bomb` is too repetitive to write by hand: the node's tests fill it in at the `@bomb`
;; line below (`node/tests/programs`, `compile_bomb(locals, targets)`), then turn the text
;; into binary with the `wat` crate. Everything else follows the world `degroup:plugin/plugin`
;; like `table-bomb.wat`: a memory, a bump `cabi_realloc`, `init` returns `ok`, `message` does
;; nothing. The component imports nothing.
(component
  (core module $m
    (memory (export "memory") 1)

    ;; Next free byte for `cabi_realloc`; bytes 16..28 are `init`'s return area.
    (global $bump (mut i32) (i32.const 1024))

    ;; cabi_realloc(old_ptr, old_size, align, new_size) -> ptr: bump allocation, growing the
    ;; memory as needed (refused growth traps).
    (func $realloc (export "cabi_realloc")
      (param $old_ptr i32) (param $old_size i32) (param $align i32) (param $new_size i32)
      (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and
          (i32.sub (i32.add (global.get $bump) (local.get $align)) (i32.const 1))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $bump (i32.add (local.get $ptr) (local.get $new_size)))
      (block $fits
        (loop $grow
          (br_if $fits
            (i32.le_u (global.get $bump) (i32.shl (memory.size) (i32.const 16))))
          (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
            (then unreachable))
          (br $grow)))
      (local.get $ptr))

    ;; @bomb

    ;; init(config: list<tuple<string, string>>) -> result<_, string>: ok.
    (func (export "init") (param $config_ptr i32) (param $config_len i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.const 16))

    ;; tick(now: u64): runs the bomb (if it ever compiled).
    (func (export "tick") (param $now i64)
      (drop (call $bomb (i32.wrap_i64 (local.get $now)))))

    ;; message(from: string, payload: list<u8>): ignored.
    (func (export "message")
      (param $from_ptr i32) (param $from_len i32) (param $payload_ptr i32) (param $payload_len i32))
  )

  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $memory))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (alias core export $i "init" (core func $init))
  (alias core export $i "tick" (core func $tick))
  (alias core export $i "message" (core func $message))

  (func (export "init")
    (param "config" (list (tuple string string)))
    (result (result (error string)))
    (canon lift (core func $init) (memory $memory) (realloc $realloc)))

  (func (export "tick") (param "now" u64)
    (canon lift (core func $tick)))

  (func (export "message") (param "from" string) (param "payload" (list u8))
    (canon lift (core func $message) (memory $memory) (realloc $realloc)))
)
