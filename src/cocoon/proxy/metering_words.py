"""Common English words that mainstream BPE vocabularies (GPT-2, Llama, Mistral, Qwen, SmolLM2; 32k-256k
tokens) encode as one token, with or without a leading space: the 1 000 first letter-only merges of SmolLM2's
49k vocabulary that are also one token without their space, plus the English one- and two-letter words (a
few stems such as ``activ`` come along; they never stand alone in text). The usage audit's byte-based
estimate (:func:`cocoon.proxy.metering.estimate_tokens`) counts each as one token.
"""

from __future__ import annotations

__all__ = ["COMMON_WORDS"]

_WORDS = """
a ability able about above abs acc accept access according account achie act action activ activities
activity actually add address adult adv aff after again against age aim air all allow allows almost
along already also always am among amount an analy analysis and anim animals ann another ant any app
appro arch are area areas arg around arr art article as ask aspect ass associ associated at att
attention aut author available avoid aware away back bal bar bas based be bec because been before
beg begin behav behavior being bel belie below ben best bet better between big black blood body book
both brain bre break bro build building built bus business but by cal call called came can cancer
cannot cap capt car care case cases cat cause cell cells cent century certain chall change changes
char character che check chem chemical child children cho cir circ city claim class cle clean clear
climate clos close col collect color com comb come comes comm commit common commun community comp
company compet complex comput computer con conc concept condition conditions conduct conf conn
connect cons consider const cont contact content context contin continue control cor cost could
count countries country course cre creat create created creating crit critical cru cult cultural
culture cur current cut dam dat data day days death deb dec deep def deg del dem dep des desc design
designed dest det detail determ dev develop developed development did diff different difficult dig
direct dis disc dise disease dist do doc does dog doing dom don done down draw drug due during each
early eas easy econom economic educ education eff effect effective effects effic either ele elect
elements else emb emerg employ enc end energy eng engine enh enough ens ensure ent environment
environmental equ especially ess essential est estab etc eth even event events ever every evidence
exam example exc except exist exp expect exper experience expl ext extra fac face fact factors fail
fall fam family far farm fat feed feel fem few field fig fil file fin find first fish five flow flu
focus fol follow following food for fore form forms found four fre free fri friends from full fun
function fund future gas gen gener general get give given global go going good govern government gra
great green ground group groups grow growth hab had half hand hard harm has have having he head
health healthy heart heat hel help helps her here hig high higher him his hist historical history
hold home hours house how however hum human ide idea ident if ill image imm imp impact import
important impro in inc include including incre increasing ind individual industry inf influ
information init ins inst instance instead int integ inter interest intern into introdu inv invest
invol is iss issue issues it its job jour just keep key kind know knowledge known lab land language
larg large last later law lay lead learn learning least led left leg less let level levels life
light lik like likely lim line link list lit liter little live living loc local log long look loss
lot love low lower mach made main major make making man management many mar mark market mass mat
material materials matter max may me mean meaning means measure med medical mem members men mess met
method methods micro might mil mill million min mind mod model modern mon money months mor more most
mot move much mult multiple mus music must my name national natural nature near necess necessary
need needed needs neg net never new next no non norm not now num number nut object obs observ occ
occur of off offer offic often oh oil ok old on once one online only open oper opp opt or order
organ orig original other others our out over own pain paper par parent parents part particip
particularly parts pass past pat path patients pattern pay people per percent perform period pers
person personal phot phys physical pict pie place plan plant plants play point pol political pop
popular population port pos position positive poss possible post pot potential power pract practice
pre pred pres present press pressure prevent previous prim print priv pro prob problem problems
process produ product production products prof prog program programs project prom prot prov provided
psych pub public published pur put quality quest question questions quick rad range rate rather read
reading real really reason rec rece recent recogn recomm record red reduce ref reflect reg region
regular rel related relations relationship rele rem rep report represent requ require required res
researc research resources resp respect respons response rest result results ret return rev review
right rights ris risk role run said sal same sat say school sci science scient second see seen
select self sens sense sent separ ser serv service services set sever several sex share she short
should show side sign significant sim similar simple since sing single sit site situ size skills
skin sleep small so soci social soft soil sol some someone something sometimes sound source sources
space spe spec special species specific spread stand start started stat state states ste step still
stories story str stre streng stress strong struct structure stud student students studies study sub
subject subst success such suff suggest sum sun super supp support sur surface surv sym system
systems take taken taking target team techn technology tell tem temperature ter term terms test text
than that the their them then there these they thing things think this those though thought three
through time times to today together too tool tools top tot total tra traditional training trans
travel tre treat treatment true try turn two typ type types under understand understanding unique
unit unt until up upon us use used using usually val value values var vari ver vers very view vir
vis vol want war was water way ways we week weight well were what whe when where whether which while
white who whole why will wind with within without women word words work working works world would
writ writing year years yet you young your
"""

COMMON_WORDS = frozenset(_WORDS.split())
