; Slipway's lab VLAN programs (src/rehearse/lab/vlan.ts), for tc's cls_bpf in
; direct-action mode. The lab's host kernel has neither 8021q nor bridge VLAN filtering,
; so these tag and untag with the eBPF helpers instead. LLVM IR, so Debian's `llc` alone
; builds the object (no C compiler); vlan.ts fills in the VLAN id ({{VID}}) first.
;
;   endpoint/egress   a namespace's link onto the lab bridge: every frame it sends gets
;                     tag VID
;   endpoint/ingress  ... and it takes in only frames tagged VID, untagged
;   port/ingress      a machine's switch port (its tap), frames from the machine: tagged
;                     VID is untagged onto the lab segment, untagged passes, any other tag
;                     is dropped; the port remembers whether the machine last spoke
;                     tagged (the map)
;   port/egress       ... frames to the machine: tagged VID when it last spoke tagged
;                     (its installed system, on a VLAN), untagged otherwise (its firmware
;                     and installer, which boot untagged from the network)
;
; struct __sk_buff offsets: vlan_present 20, vlan_tci 24. Helpers: 1 map_lookup_elem,
; 18 skb_vlan_push, 19 skb_vlan_pop. Return codes: 0 TC_ACT_OK, 2 TC_ACT_SHOT.
; ETH_P_8021Q in network byte order is 0x0081 (129).
target datalayout = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
target triple = "bpf"

; a BTF-defined map (libbpf reads its shape from the debug info below): an array of one
; u32, pinned by name so the port's two programs, loaded by two tc filters, share it
%struct.map = type { [2 x i32]*, [1 x i32]*, i32*, i32*, [1 x i32]* }

@_license = global [4 x i8] c"GPL\00", section "license", align 1
@slipway_port = global %struct.map zeroinitializer, section ".maps", align 8, !dbg !3
@llvm.used = appending global [6 x i8*] [
  i8* getelementptr inbounds ([4 x i8], [4 x i8]* @_license, i32 0, i32 0),
  i8* bitcast (%struct.map* @slipway_port to i8*),
  i8* bitcast (i32 (i8*)* @endpoint_egress to i8*),
  i8* bitcast (i32 (i8*)* @endpoint_ingress to i8*),
  i8* bitcast (i32 (i8*)* @port_ingress to i8*),
  i8* bitcast (i32 (i8*)* @port_egress to i8*)
], section "llvm.metadata"

define i32 @endpoint_egress(i8* %skb) #0 section "endpoint/egress" !dbg !40 {
  %r = call i64 inttoptr (i64 18 to i64 (i8*, i16, i16)*)(i8* %skb, i16 129, i16 {{VID}})
  %bad = icmp ne i64 %r, 0
  %ret = select i1 %bad, i32 2, i32 0
  ret i32 %ret
}

define i32 @endpoint_ingress(i8* %skb) #0 section "endpoint/ingress" !dbg !41 {
  %p = getelementptr i8, i8* %skb, i64 20
  %pp = bitcast i8* %p to i32*
  %present = load i32, i32* %pp
  %t = getelementptr i8, i8* %skb, i64 24
  %tp = bitcast i8* %t to i32*
  %tci = load i32, i32* %tp
  %vid = and i32 %tci, 4095
  %has = icmp ne i32 %present, 0
  %same = icmp eq i32 %vid, {{VID}}
  %mine = and i1 %has, %same
  br i1 %mine, label %pop, label %drop
pop:
  %r = call i64 inttoptr (i64 19 to i64 (i8*)*)(i8* %skb)
  ret i32 0
drop:
  ret i32 2
}

define i32 @port_ingress(i8* %skb) #0 section "port/ingress" !dbg !42 {
  %k = alloca i32, align 4
  store i32 0, i32* %k
  %kp = bitcast i32* %k to i8*
  %p = getelementptr i8, i8* %skb, i64 20
  %pp = bitcast i8* %p to i32*
  %present = load i32, i32* %pp
  %t = getelementptr i8, i8* %skb, i64 24
  %tp = bitcast i8* %t to i32*
  %tci = load i32, i32* %tp
  %vid = and i32 %tci, 4095
  %untagged = icmp eq i32 %present, 0
  br i1 %untagged, label %plain, label %tagged
plain:
  %v0 = call i8* inttoptr (i64 1 to i8* (i8*, i8*)*)(i8* bitcast (%struct.map* @slipway_port to i8*), i8* %kp)
  %m0 = bitcast i8* %v0 to i32*
  %n0 = icmp eq i32* %m0, null
  br i1 %n0, label %ok, label %set0
set0:
  store i32 0, i32* %m0
  br label %ok
tagged:
  %mine = icmp eq i32 %vid, {{VID}}
  br i1 %mine, label %pop, label %drop
pop:
  %v1 = call i8* inttoptr (i64 1 to i8* (i8*, i8*)*)(i8* bitcast (%struct.map* @slipway_port to i8*), i8* %kp)
  %m1 = bitcast i8* %v1 to i32*
  %n1 = icmp eq i32* %m1, null
  br i1 %n1, label %untag, label %set1
set1:
  store i32 1, i32* %m1
  br label %untag
untag:
  %r = call i64 inttoptr (i64 19 to i64 (i8*)*)(i8* %skb)
  br label %ok
ok:
  ret i32 0
drop:
  ret i32 2
}

define i32 @port_egress(i8* %skb) #0 section "port/egress" !dbg !43 {
  %k = alloca i32, align 4
  store i32 0, i32* %k
  %kp = bitcast i32* %k to i8*
  %mv = call i8* inttoptr (i64 1 to i8* (i8*, i8*)*)(i8* bitcast (%struct.map* @slipway_port to i8*), i8* %kp)
  %m = bitcast i8* %mv to i32*
  %n = icmp eq i32* %m, null
  br i1 %n, label %ok, label %read
read:
  %v = load i32, i32* %m
  %tagged = icmp eq i32 %v, 1
  br i1 %tagged, label %push, label %ok
push:
  %r = call i64 inttoptr (i64 18 to i64 (i8*, i16, i16)*)(i8* %skb, i16 129, i16 {{VID}})
  %bad = icmp ne i64 %r, 0
  %ret = select i1 %bad, i32 2, i32 0
  ret i32 %ret
ok:
  ret i32 0
}

attributes #0 = { nounwind }

; debug info: only what libbpf needs for the map's BTF, and each program's signature
!llvm.dbg.cu = !{!0}
!llvm.module.flags = !{!20, !21}
!0 = distinct !DICompileUnit(language: DW_LANG_C99, file: !1, producer: "slipway", isOptimized: true, runtimeVersion: 0, emissionKind: FullDebug, globals: !2)
!1 = !DIFile(filename: "vlan-tc.ll", directory: "src/rehearse/lab")
!2 = !{!3}
!3 = !DIGlobalVariableExpression(var: !4, expr: !DIExpression())
!4 = distinct !DIGlobalVariable(name: "slipway_port", scope: !0, file: !1, line: 1, type: !5, isLocal: false, isDefinition: true)
!5 = distinct !DICompositeType(tag: DW_TAG_structure_type, file: !1, line: 1, size: 320, elements: !6)
!6 = !{!7, !8, !9, !10, !22}
; BPF_MAP_TYPE_ARRAY (2), max_entries 1, u32 key and value, LIBBPF_PIN_BY_NAME (1)
!7 = !DIDerivedType(tag: DW_TAG_member, name: "type", scope: !5, file: !1, line: 1, baseType: !11, size: 64)
!8 = !DIDerivedType(tag: DW_TAG_member, name: "max_entries", scope: !5, file: !1, line: 1, baseType: !14, size: 64, offset: 64)
!9 = !DIDerivedType(tag: DW_TAG_member, name: "key", scope: !5, file: !1, line: 1, baseType: !17, size: 64, offset: 128)
!10 = !DIDerivedType(tag: DW_TAG_member, name: "value", scope: !5, file: !1, line: 1, baseType: !17, size: 64, offset: 192)
!22 = !DIDerivedType(tag: DW_TAG_member, name: "pinning", scope: !5, file: !1, line: 1, baseType: !14, size: 64, offset: 256)
!11 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !12, size: 64)
!12 = !DICompositeType(tag: DW_TAG_array_type, baseType: !18, size: 64, elements: !13)
!13 = !{!DISubrange(count: 2)}
!14 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !15, size: 64)
!15 = !DICompositeType(tag: DW_TAG_array_type, baseType: !18, size: 32, elements: !16)
!16 = !{!DISubrange(count: 1)}
!17 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !19, size: 64)
!18 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
!19 = !DIBasicType(name: "unsigned int", size: 32, encoding: DW_ATE_unsigned)
!20 = !{i32 2, !"Debug Info Version", i32 3}
!21 = !{i32 7, !"Dwarf Version", i32 4}
!30 = !DISubroutineType(types: !31)
!31 = !{!18, !32}
!32 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: null, size: 64)
!40 = distinct !DISubprogram(name: "endpoint_egress", scope: !1, file: !1, line: 1, type: !30, scopeLine: 1, flags: DIFlagPrototyped, spFlags: DISPFlagDefinition | DISPFlagOptimized, unit: !0, retainedNodes: !50)
!41 = distinct !DISubprogram(name: "endpoint_ingress", scope: !1, file: !1, line: 1, type: !30, scopeLine: 1, flags: DIFlagPrototyped, spFlags: DISPFlagDefinition | DISPFlagOptimized, unit: !0, retainedNodes: !51)
!42 = distinct !DISubprogram(name: "port_ingress", scope: !1, file: !1, line: 1, type: !30, scopeLine: 1, flags: DIFlagPrototyped, spFlags: DISPFlagDefinition | DISPFlagOptimized, unit: !0, retainedNodes: !52)
!43 = distinct !DISubprogram(name: "port_egress", scope: !1, file: !1, line: 1, type: !30, scopeLine: 1, flags: DIFlagPrototyped, spFlags: DISPFlagDefinition | DISPFlagOptimized, unit: !0, retainedNodes: !53)
!50 = !{!60}
!51 = !{!61}
!52 = !{!62}
!53 = !{!63}
!60 = !DILocalVariable(name: "skb", arg: 1, scope: !40, file: !1, line: 1, type: !32)
!61 = !DILocalVariable(name: "skb", arg: 1, scope: !41, file: !1, line: 1, type: !32)
!62 = !DILocalVariable(name: "skb", arg: 1, scope: !42, file: !1, line: 1, type: !32)
!63 = !DILocalVariable(name: "skb", arg: 1, scope: !43, file: !1, line: 1, type: !32)
