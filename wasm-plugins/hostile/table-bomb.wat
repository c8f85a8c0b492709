;; Hostile: a component whose `tick` grows a funcref table without end.
;;
;; Rust cannot emit `table.grow`, so this one is written by hand in the component text format.
;; The node's tests turn it into binary with the `wat` crate (`wat::parse_file`).
;;
;; `tick` grows the table by 10,000 elements per step until `table.grow` returns -1 (refused
;; by the host's table limit, 100,000 elements by default), then hits `unreachable`: a trap the
;; host restarts with backoff. If the host's limiter traps instead of refusing, the effect is
;; the same. `init` returns `ok`, `message` does nothing. The component imports nothing.
;;
;; The exports follow the world `degroup:plugin/plugin` with the canonical ABI: a memory and a
;; `cabi_realloc` (a bump allocator that never frees) so that the host can pass `init`'s
;; configuration and `message`'s arguments, which are ignored.
(component
  (core module $m
    (memory (export "memory") 1)
    (table $t 1 funcref)

    ;; Next free byte for `cabi_realloc`; bytes 16..28 are `init`'s return area.
    (global $bump (mut i32) (i32.const 1024))

    ;; cabi_realloc(old_ptr, old_size, align, new_size) -> ptr: bump allocation, growing the
    ;; memory as needed (refused growth traps).
    (func $realloc (export "cabi_realloc")
      (param $old_ptr i32) (param $old_size i32) (param $align i32) (param $new_size i32)
      (result i32)
      (local $ptr i32)
      ;; ptr = (bump + align - 1) & -align
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

    ;; init(config: list<tuple<string, string>>) -> result<_, string>
    ;; Core: (ptr, len) -> pointer to the return area; discriminant 0 = ok.
    (func (export "init") (param $config_ptr i32) (param $config_len i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.const 16))

    ;; tick(now: u64): grow the table by 10,000 elements until refused, then trap.
    (func (export "tick") (param $now i64)
      (loop $more
        (br_if $more
          (i32.ne
            (table.grow $t (ref.null func) (i32.const 10000))
            (i32.const -1))))
      unreachable)

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
